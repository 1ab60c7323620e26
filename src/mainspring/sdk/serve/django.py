"""Serve a client's functions from a Django project (``mainspring.django.serve``).

    # urls.py
    urlpatterns = [..., mainspring.django.serve(client, [greet, charge])]   # api/inngest

The view is csrf-exempt (the executor authenticates with request signatures instead). As in
the reference SDK, it is async when any served function is async and Django is 5 or later
(``csrf_exempt`` keeps async views async only from Django 5): under ASGI it then runs on the
server's event loop, and under WSGI Django runs it for us. Otherwise it is a sync view that
runs the async handler with ``asyncio.run``, a fresh event loop per request (the handler keeps
nothing between requests); concurrency is then the server's, one thread per request (the
dev server, ``gunicorn --threads``, or Django's ASGI handler, which gives each request its own
thread for sync views), so a slow step blocks only its own request.

``request.body`` is subject to ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB by default): raise it if
runs carry large step outputs, or Django refuses the executor's call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import django
import django.http
import django.urls
import django.views.decorators.csrf

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.serve.handler import (
    DEFAULT_SERVE_PATH,
    ServeHandler,
    ServeRequest,
    ServeResponse,
)
from mainspring.sdk.serve.streaming import warn_if_asked

FRAMEWORK = "django"


def serve(
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
    enable_unauthed_sync: bool | None = None,
) -> django.urls.URLPattern:
    """A URL pattern (named ``mainspring``) answering GET, PUT and POST for ``functions``.

    The route is ``serve_path``, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``, relative
    to where the pattern is included. ``serve_origin``, ``serve_path`` and ``public_path``
    also set the URL the app syncs with (behind a proxy, see :mod:`.urls`); by default it is
    the URL the sync request came in on. ``enable_unauthed_sync=False`` (or
    ``INNGEST_ENABLE_UNAUTHED_SYNC=false``) refuses an unsigned sync in cloud mode. Answers
    are never streamed, as in the reference SDK.
    """
    functions = list(functions)
    any_async = any(fn.is_handler_async for fn in functions)
    # Under WSGI, or as a sync view, a request may get an event loop of its own: executions
    # are kept between calls only by the async view (LiveExecutions also checks the loop).
    handler = ServeHandler(
        client,
        functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        public_path=public_path,
        enable_unauthed_sync=enable_unauthed_sync,
        keep_executions=any_async and django.VERSION >= (5, 0),
    )
    warn_if_asked(client.settings, FRAMEWORK, client.logger)
    path = (serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH).lstrip("/")

    if any_async and django.VERSION >= (5, 0):

        async def inngest_api_async(request: django.http.HttpRequest) -> django.http.HttpResponse:
            return _response(await handler.handle(_request(request)))

        view: Any = inngest_api_async
    else:

        def inngest_api(request: django.http.HttpRequest) -> django.http.HttpResponse:
            return _response(asyncio.run(handler.handle(_request(request))))

        view = inngest_api

    exempt = django.views.decorators.csrf.csrf_exempt(view)
    return django.urls.path(path, exempt, name="mainspring")


def _request(request: django.http.HttpRequest) -> ServeRequest:
    return ServeRequest(
        method=request.method or "GET",
        url=request.build_absolute_uri(),
        headers={key.lower(): value for key, value in request.headers.items()},
        body=request.body,
        raw=request,
    )


def _response(answer: ServeResponse) -> django.http.HttpResponse:
    return django.http.HttpResponse(answer.body, status=answer.status, headers=answer.headers)
