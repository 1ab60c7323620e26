"""Serve a client's functions from a Tornado app (``mainspring.tornado.serve``).

    app = tornado.web.Application()
    mainspring.tornado.serve(app, client, [greet, charge])   # GET/PUT/POST /api/inngest

Tornado runs on asyncio, so the handler's methods are coroutines on the server's event loop:
async functions (:class:`~mainspring.Context`) run there, and sync ones
(:class:`~mainspring.ContextSync`) and their steps on threads of their own, so neither holds
the loop up. The reference SDK's Tornado adapter serves sync functions only, and runs them on
the loop; this one serves both. As there, answers are never streamed.

The route is exempt from Tornado's XSRF check (``xsrf_cookies=True``): the executor has no
cookie to send, and in cloud mode it authenticates with request signatures instead. Answers
carry no ETag, so that no executor call is ever answered 304.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import tornado.web

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.serve.handler import DEFAULT_SERVE_PATH, ServeHandler, ServeRequest
from mainspring.sdk.serve.streaming import warn_if_asked

FRAMEWORK = "tornado"


def serve(
    app: tornado.web.Application,
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
    enable_unauthed_sync: bool | None = None,
) -> None:
    """Add one route answering GET, PUT and POST for ``functions`` to ``app``.

    The route is ``serve_path``, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``, on any
    host. ``serve_origin``, ``serve_path`` and ``public_path`` also set the URL the app syncs
    with (behind a proxy, see :mod:`.urls`); by default it is the URL the sync request came
    in on. ``enable_unauthed_sync=False`` (or ``INNGEST_ENABLE_UNAUTHED_SYNC=false``) refuses
    an unsigned sync in cloud mode.
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
    warn_if_asked(client.settings, FRAMEWORK, client.logger)
    path = serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH

    class MainspringHandler(tornado.web.RequestHandler):
        def check_xsrf_cookie(self) -> None:
            """No XSRF check: see the module docstring."""

        def compute_etag(self) -> None:
            return None

        async def get(self, *args: str, **kwargs: str) -> None:
            await self._answer()

        async def put(self, *args: str, **kwargs: str) -> None:
            await self._answer()

        async def post(self, *args: str, **kwargs: str) -> None:
            await self._answer()

        async def _answer(self) -> None:
            request = self.request
            answer = await handler.handle(
                ServeRequest(
                    method=request.method or "GET",
                    url=request.full_url(),
                    headers={key.lower(): value for key, value in request.headers.items()},
                    body=request.body,
                    raw=request,
                )
            )
            self.set_status(answer.status)
            for key, value in answer.headers.items():
                self.set_header(key, value)
            self.write(answer.body)

    # A pattern, to Tornado: a path with regex characters in it must match only itself.
    app.add_handlers(r".*", [(re.escape(path), MainspringHandler)])
