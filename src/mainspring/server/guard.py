"""Every answer is JSON, and no exception escapes to the HTTP server.

Starlette's outermost middleware answers an unexpected exception with a 500 and then
raises it again, for the server to log; uvicorn then closes the connection, so one bad
request cost its client the keep-alive connection. :class:`Contained` sits outside it:
it logs the exception and swallows it once a complete answer has gone out (or sends a
JSON 500 itself if none had started), so the connection stays usable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mainspring.server.limits import Refused

logger = logging.getLogger("mainspring.server")

INTERNAL_ERROR = {"error": "internal server error", "status": 500}


def json_response(
    data: Any,
    status: int,
    *,
    kind: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``data`` as a JSON answer carrying ``X-Inngest-Server-Kind``.

    A value orjson cannot write (it should never be one: stored values are checked on the
    way in) becomes a JSON 500 rather than an exception.
    """
    try:
        body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        logger.exception("an answer could not be encoded as JSON")
        body, status = orjson.dumps(INTERNAL_ERROR), 500
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), "x-inngest-server-kind": kind},
    )


def exception_handlers(kind: str) -> dict[Any, Any]:
    """Starlette handlers: refusals, routing errors (404, 405) and the rest as JSON."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        data: dict[str, Any] = {"error": exc.message, "status": exc.status}
        if request.url.path.startswith("/e/"):
            data = {"ids": [], **data}  # the event API's answer shape (protocol §8.3)
        headers = {"connection": "close"} if exc.close else None
        return json_response(data, exc.status, kind=kind, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        data = {"error": exc.detail, "status": exc.status_code}
        return json_response(data, exc.status_code, kind=kind, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return json_response(INTERNAL_ERROR, 500, kind=kind)

    return {Refused: refused, HTTPException: http_error, Exception: unexpected}


class Contained:
    """Wraps the whole app: an exception never reaches the HTTP server (see module doc)."""

    def __init__(self, app: ASGIApp, *, kind: str) -> None:
        self.app = app
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def watched(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if finished:
                return  # a complete answer (the JSON 500) went out: keep the connection
            if started:
                raise  # half an answer: only closing the connection can end it
            response = json_response(INTERNAL_ERROR, 500, kind=self.kind)
            await response(scope, receive, send)
