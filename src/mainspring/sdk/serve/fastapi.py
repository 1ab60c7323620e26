"""Serve a client's functions from a FastAPI app (``mainspring.fast_api.serve``).

    app = fastapi.FastAPI()
    mainspring.fast_api.serve(app, client, [greet, charge])   # GET/PUT/POST /api/inngest

The endpoint is async and runs the handler on the server's event loop; sync functions
(:class:`~mainspring.ContextSync`) and their steps run on threads of their own, so they do
not hold the loop up. With ``streaming=Streaming.FORCE`` (or ``INNGEST_STREAMING=force``)
executions answer as a stream of keep-alive spaces (:mod:`.streaming`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fastapi

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.serve.handler import DEFAULT_SERVE_PATH, ServeHandler, ServeRequest
from mainspring.sdk.serve.streaming import keepalive_body, streaming_mode, streams
from mainspring.sdk.settings import Streaming

FRAMEWORK = "fast_api"
METHODS = ["GET", "PUT", "POST"]


def serve(
    app: fastapi.FastAPI | fastapi.APIRouter,
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
    enable_unauthed_sync: bool | None = None,
    streaming: Streaming | None = None,
) -> None:
    """Add one route answering GET, PUT and POST for ``functions`` to ``app``.

    The route is ``serve_path``, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``.
    ``serve_origin``, ``serve_path`` and ``public_path`` also set the URL the app syncs with
    (behind a proxy, see :mod:`.urls`); by default it is the URL the sync request came in
    on. ``enable_unauthed_sync=False`` (or ``INNGEST_ENABLE_UNAUTHED_SYNC=false``) refuses
    an unsigned sync in cloud mode. ``streaming`` defaults to ``INNGEST_STREAMING``.
    """
    handler = ServeHandler(
        client,
        functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        public_path=public_path,
        enable_unauthed_sync=enable_unauthed_sync,
    )
    stream = streaming_mode(streaming, client.settings) is Streaming.FORCE
    path = serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH

    async def inngest_api(request: fastapi.Request) -> fastapi.Response:
        served = ServeRequest(
            method=request.method,
            url=str(request.url),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=await request.body(),
            raw=request,
        )
        if stream and streams(served):
            return fastapi.responses.StreamingResponse(
                keepalive_body(handler, served), status_code=201, headers=handler.headers()
            )
        answer = await handler.handle(served)
        return fastapi.Response(
            content=answer.body, status_code=answer.status, headers=answer.headers
        )

    app.add_api_route(
        path, inngest_api, methods=METHODS, include_in_schema=False, response_model=None
    )
