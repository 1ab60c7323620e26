"""A bare ASGI app serving a client's functions (mount it, or run it with uvicorn).

app = mainspring.sdk.serve.asgi.serve(client, functions)   # uvicorn module:app

It answers on any path; the options of the other adapters (``serve_origin``, ``serve_path``,
``public_path``, ``enable_unauthed_sync``) go to :class:`ServeHandler`, and ``streaming``
works as FastAPI's (:mod:`.streaming`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.serve.handler import ServeHandler, ServeRequest
from mainspring.sdk.serve.streaming import keepalive_body, streaming_mode, streams
from mainspring.sdk.settings import Streaming

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    host = dict(scope.get("headers") or []).get(b"host", b"localhost").decode("latin-1")
    path = scope.get("root_path", "") + scope.get("path", "/")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def serve(
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    framework: str = "asgi",
    streaming: Streaming | None = None,
    **options: Any,
) -> ASGIApp:
    """An ASGI application answering GET, PUT and POST for ``functions``."""
    handler = ServeHandler(client, functions, framework=framework, **options)
    stream = streaming_mode(streaming, client.settings) is Streaming.FORCE

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers") or []
        }
        request = ServeRequest(scope["method"], _url(scope), headers, b"".join(chunks), scope)
        if stream and streams(request):
            await _send_streamed(handler, request, send)
            return
        response = await handler.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    return app


async def _send_streamed(handler: ServeHandler, request: ServeRequest, send: Send) -> None:
    headers = [(k.encode(), v.encode()) for k, v in handler.headers().items()]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    # Closed at once if the executor hangs up, not whenever the collector gets to it.
    async with contextlib.aclosing(keepalive_body(handler, request)) as chunks:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
