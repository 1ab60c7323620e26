"""Serve a client's functions from a Flask app (``mainspring.flask.serve``).

    app = flask.Flask(__name__)
    mainspring.flask.serve(app, client, [greet, charge])   # GET/PUT/POST /api/inngest

Flask views are sync, so each request runs the async handler to completion with
``asyncio.run``: a fresh event loop per request, closed (with its default executor) before
the response goes out. The handler keeps no execution between requests, so there is nothing to
share across loops, and no loop outlives the thread that made it. That costs a fraction of a
millisecond per request and needs no extra dependency (``flask[async]`` would do the same
through asgiref). Concurrency is the WSGI server's: with threads (Flask's dev server,
``gunicorn --threads``) a slow step blocks only its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import flask

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.serve.handler import DEFAULT_SERVE_PATH, ServeHandler, ServeRequest
from mainspring.sdk.serve.streaming import warn_if_asked

FRAMEWORK = "flask"
METHODS = ["GET", "PUT", "POST"]


def serve(
    app: flask.Flask | flask.Blueprint,
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
    enable_unauthed_sync: bool | None = None,
) -> None:
    """Register one view answering GET, PUT and POST for ``functions`` on ``app``.

    The route is ``serve_path``, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``; its
    endpoint name is ``mainspring:<path>``. ``serve_origin``, ``serve_path`` and
    ``public_path`` also set the URL the app syncs with (behind a proxy, see :mod:`.urls`);
    by default it is the URL the sync request came in on. ``enable_unauthed_sync=False`` (or
    ``INNGEST_ENABLE_UNAUTHED_SYNC=false``) refuses an unsigned sync in cloud mode. Answers
    are never streamed, as in the reference SDK. Must not be called from a thread running an
    event loop (``asyncio.run`` refuses).
    """
    handler = ServeHandler(
        client,
        functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        public_path=public_path,
        enable_unauthed_sync=enable_unauthed_sync,
        keep_executions=False,  # every request has an event loop of its own
    )
    warn_if_asked(client.settings, FRAMEWORK, client.logger)
    path = serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH

    def inngest_api() -> flask.Response:
        request = flask.request
        answer = asyncio.run(
            handler.handle(
                ServeRequest(
                    method=request.method,
                    url=request.url,
                    headers={key.lower(): value for key, value in request.headers.items()},
                    body=request.get_data(),
                    raw=request,
                )
            )
        )
        return flask.Response(answer.body, status=answer.status, headers=answer.headers)

    app.add_url_rule(path, endpoint=f"mainspring:{path}", view_func=inngest_api, methods=METHODS)
