"""Limits applied before any work: request bodies are capped per route, from the declared
``Content-Length`` (refused before a byte is read) and while streaming (reading stops as
soon as the cap is passed), so no request buffers more than its cap; JSON nesting and list
parameters are checked before they reach the engine.

A refusal is a :class:`Refused`, which the app turns into a JSON answer naming the problem.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
from starlette.requests import ClientDisconnect, Request

from mainspring.protocol.json_depth import nests_deeper

#: ``POST /e/{key}``: the protocol's hard cap on one send (§8.3).
EVENTS_BODY_BYTES: Final = 3 * 1024 * 1024
#: ``POST /fn/register``: an app's whole configuration; large apps reach megabytes.
REGISTER_BODY_BYTES: Final = 3 * 1024 * 1024
#: ``POST /invoke/{slug}``: one event's data (at most 512 KiB) and its envelope.
INVOKE_BODY_BYTES: Final = 1024 * 1024
#: ``POST /v0/gql``: a query and its variables.
GRAPHQL_BODY_BYTES: Final = 1024 * 1024

#: How deep a JSON body may nest, well under what orjson can write back (254 levels).
MAX_BODY_DEPTH: Final = 100

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100

_DIGITS: Final = re.compile(r"[0-9]{1,7}")
#: Crockford base32, 26 characters, the first at most 7 (128 bits); any case.
_ULID: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")


class Refused(Exception):
    """A request refused before any work: ``status`` and a message naming the problem.

    ``close`` asks the server to drop the connection after answering: set when the body
    was left unread, which would otherwise still have to be received and thrown away.
    """

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def too_large(cap: int) -> Refused:
    return Refused(413, f"the body is over the {cap}-byte limit of this route", close=True)


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refusing (413) one longer than ``cap`` bytes without reading it
    (declared ``Content-Length``) or without reading more than one chunk past the cap."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not declared.isascii() or not declared.isdigit():
            raise Refused(400, "Content-Length is not a number", close=True)
        if int(declared) > cap:
            raise too_large(cap)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise too_large(cap)
    except ClientDisconnect:
        raise Refused(400, "the client went away before sending the whole body") from None
    return bytes(body)


async def read_json(
    request: Request, cap: int, *, depth: int | None = MAX_BODY_DEPTH, empty: Any = ...
) -> Any:
    """The body parsed as JSON, capped as :func:`read_body`, refused if it nests deeper
    than ``depth`` levels (``None``: the route checks the parts it keeps). ``empty`` is
    returned for an empty body when given; otherwise an empty body is not JSON."""
    body = await read_body(request, cap)
    if not body and empty is not ...:
        return empty
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"the body is not valid JSON: {exc}") from exc
    if depth is not None and nests_deeper(value, depth, body):
        raise Refused(400, f"the body nests deeper than {depth} levels")
    return value


def limit_param(request: Request, name: str = "limit") -> int:
    """The ``limit`` query parameter: a whole number from 1 to :data:`MAX_LIMIT`."""
    raw = request.query_params.get(name)
    if raw is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Refused(
            400, f"{name}: expected a whole number from 1 to {MAX_LIMIT}, got {_shown(raw)}"
        )
    return int(raw)


def ulid_param(request: Request, name: str) -> str | None:
    """A cursor query parameter: an id as the server hands out (a ULID), upper-cased."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _ULID.fullmatch(raw):
        raise Refused(400, f"{name}: expected an id (a 26-character ULID), got {_shown(raw)}")
    return raw.upper()


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")
