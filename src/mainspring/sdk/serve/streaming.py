"""Streamed execution answers (``Streaming.FORCE``, protocol §3.5).

Some hosts cut a response that sends nothing for a while (serverless platforms, proxies
with a first-byte timeout), which a long step easily exceeds. Streamed, an execution
answers 201 at once, sends a space every :data:`KEEPALIVE_SECONDS` while the function runs,
then the real answer as one JSON object ``{"body": <the body as text>, "headers": {...},
"status": <the real status>}``. JSON ignores the spaces before it, so the whole body still
parses; the executor reads the real status, headers and body from the object.

Only executions stream: introspection, sync and trust probes answer at once anyway. As in
the reference SDK, the FastAPI adapter (and our ASGI one) can stream; Flask, Django and
Tornado answer plainly and say so if ``INNGEST_STREAMING`` asks for it.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncGenerator

import orjson

from mainspring.sdk.serve.handler import ServeHandler, ServeRequest, ServeResponse
from mainspring.sdk.settings import Settings, Streaming

#: Seconds between keep-alive spaces; a module constant so that tests can lower it.
KEEPALIVE_SECONDS = 3.0

#: Answers still being computed after their stream was dropped (the executor hung up):
#: held here so they finish, as a plain request's would, instead of being collected.
_ORPHANS: set[asyncio.Task[ServeResponse]] = set()


def streaming_mode(streaming: Streaming | str | None, settings: Settings) -> Streaming:
    """The adapter's argument, else ``INNGEST_STREAMING``, else no streaming.

    Anything but a :class:`Streaming` (or its value, ``"force"``) is refused: a look-alike
    enum compared by identity would silently never stream.
    """
    if streaming is not None and not isinstance(streaming, Streaming):
        try:
            streaming = Streaming(streaming)
        except ValueError:
            raise ValueError(
                f"streaming={streaming!r}: expected mainspring.Streaming.FORCE or .DISABLE"
            ) from None
    return streaming or settings.streaming or Streaming.DISABLE


def warn_if_asked(settings: Settings, framework: str, logger: logging.Logger) -> None:
    """For adapters that cannot stream: say that ``INNGEST_STREAMING`` is not honoured."""
    if settings.streaming is Streaming.FORCE:
        logger.warning(
            "INNGEST_STREAMING=force is not supported by the %s adapter (nor by the "
            "reference SDK's): its answers are not streamed; use mainspring.fast_api to stream",
            framework,
        )


def streams(request: ServeRequest) -> bool:
    """Whether ``request`` is an execution, the only kind of request whose answer streams."""
    if request.method.upper() != "POST":
        return False
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    return bool(query.get("fnId")) and "probe" not in query


async def keepalive_body(
    handler: ServeHandler, request: ServeRequest
) -> AsyncGenerator[bytes, None]:
    """The body of a 201 streamed answer to ``request``: spaces, then the real answer."""
    task = asyncio.ensure_future(handler.handle(request))
    try:
        while True:
            yield b" "
            done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_SECONDS)
            if done:
                break
        yield _final(handler, task)
    finally:
        if not task.done():
            _ORPHANS.add(task)
            task.add_done_callback(_forget)


def _final(handler: ServeHandler, task: asyncio.Task[ServeResponse]) -> bytes:
    try:
        answer = task.result()
    except Exception as exc:  # the headers are gone: the error must travel in the object
        handler.client.logger.exception("answering a streamed execution failed")
        answer = ServeResponse(
            500,
            handler.headers(),
            orjson.dumps({"code": "unknown", "name": type(exc).__name__, "message": str(exc)}),
        )
    return orjson.dumps(
        {
            "body": answer.body.decode("utf-8", "replace"),
            "headers": answer.headers,
            "status": answer.status,
        }
    )


def _forget(task: asyncio.Task[ServeResponse]) -> None:
    _ORPHANS.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: nobody is left to read it
