"""Every limit of the API, met exactly and passed by one: at the limit the request is
served (no refusal naming the limit), one past it the refusal names the limit; never a
5xx, and the connection survives both (or is closed after a 413, the body left unread).

The random tests draw these values too (``strategies.around``); this table makes sure each
one is sent, in every CI run, with its exact expected answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from mainspring.engine.intake import (
    MAX_DATA_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_ID,
    MAX_EVENT_NAME,
    MAX_EVENT_TS,
    MAX_EVENTS_PER_SEND,
    MIN_EVENT_TS,
)
from mainspring.server import limits
from mainspring.server.graphql import limits as gql_limits
from tests.fuzz import harness
from tests.fuzz.conftest import Servers
from tests.fuzz.harness import Server
from tests.fuzz.wire import attack, request_bytes


@dataclasses.dataclass(frozen=True)
class Limit:
    label: str
    method: str
    path: str
    body: bytes | None
    status: int
    #: Said by the refusal (past the limit), or by no error (at it: ``None``).
    says: str | None = None
    #: At the limit: no error may mention this.
    quiet: str | None = None


def _event(**fields: Any) -> bytes:
    return orjson.dumps({"name": "fuzz/limits", **fields})


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _padded(document: bytes, size: int) -> bytes:
    """``document`` followed by JSON whitespace up to ``size`` bytes."""
    return document + b" " * (size - len(document))


def _gql(query: str) -> bytes:
    return orjson.dumps({"query": query})


def _tokens(count: int) -> str:
    """A document of exactly ``count`` tokens (its list is long: a field error, not a
    limit of the text)."""
    items = ", ".join(['"a"'] * (count - 19))
    return f"{{ runs(filter: {{functionIDs: [{items}]}}) {{ edges {{ cursor }} }} }}"


def _nesting(levels: int) -> str:
    inner = levels - 2
    return "{ " + "... on Query { " * inner + "apps { name }" + " }" * inner + " }"


def _depth(levels: int) -> str:
    spans = levels - 5
    return (
        "{ runs { edges { node { trace { "
        + "childrenSpans { " * spans
        + "name"
        + " }" * spans
        + " } } } } }"
    )


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: apps {{ name }}" for i in range(count)) + " }"


def _fields(count: int) -> str:
    return "{ apps { " + "name " * (count - 1) + "} }"


def _query_bytes(size: int) -> str:
    head, tail = '{ run(runID: "', '") { id } }'
    return head + "x" * (size - len(head) - len(tail)) + tail


def _ids(count: int) -> str:
    items = ", ".join(['"f"'] * count)
    return f"{{ runs(filter: {{functionIDs: [{items}]}}) {{ edges {{ cursor }} }} }}"


SLUG = f"{harness.APP_ID}-finishes"
E = f"/e/{harness.EVENT_KEY}"
EVENTS_CAP = limits.EVENTS_BODY_BYTES
CAP_EVENT = b'[{"name": "fuzz/limits"}]'
BIG = MAX_EVENT_BYTES - len("fuzz/limits") - len('{"s":""}')

LIMITS = [
    # list parameters
    Limit("limit 1", "GET", "/v1/events?limit=1", None, 200),
    Limit("limit max", "GET", f"/v1/events?limit={limits.MAX_LIMIT}", None, 200),
    Limit("limit 0", "GET", "/v1/events?limit=0", None, 400, "limit: "),
    Limit("limit max+1", "GET", f"/v1/events?limit={limits.MAX_LIMIT + 1}", None, 400, "limit: "),
    Limit("cursor 26", "GET", "/v1/events?cursor=7" + "Z" * 25, None, 200),
    Limit("cursor 25", "GET", "/v1/events?cursor=7" + "Z" * 24, None, 400, "cursor: "),
    Limit("cursor 27", "GET", "/v1/events?cursor=7" + "Z" * 26, None, 400, "cursor: "),
    Limit("cursor past 128 bits", "GET", "/v1/events?cursor=8" + "0" * 25, None, 400, "cursor: "),
    # events
    Limit(
        "events per send",
        "POST",
        E,
        orjson.dumps([{"name": "fuzz/limits"}] * MAX_EVENTS_PER_SEND),
        200,
    ),
    Limit(
        "events per send+1",
        "POST",
        E,
        orjson.dumps([{"name": "fuzz/limits"}] * (MAX_EVENTS_PER_SEND + 1)),
        400,
        "too many events",
    ),
    Limit("name length", "POST", E, orjson.dumps({"name": "n" * MAX_EVENT_NAME}), 200),
    Limit(
        "name length+1",
        "POST",
        E,
        orjson.dumps({"name": "n" * (MAX_EVENT_NAME + 1)}),
        400,
        f"longer than {MAX_EVENT_NAME}",
    ),
    Limit("id length", "POST", E, _event(id="i" * MAX_EVENT_ID), 200),
    Limit("id length+1", "POST", E, _event(id="i" * (MAX_EVENT_ID + 1)), 400, "id: "),
    Limit("ts min", "POST", E, _event(ts=MIN_EVENT_TS), 200),
    Limit("ts min-1", "POST", E, _event(ts=MIN_EVENT_TS - 1), 400, "ts: "),
    Limit("ts max", "POST", E, _event(ts=MAX_EVENT_TS - 1), 200),
    Limit("ts max+1", "POST", E, _event(ts=MAX_EVENT_TS), 400, "ts: "),
    Limit("data depth", "POST", E, _event(data=_nested(MAX_DATA_DEPTH)), 200),
    Limit(
        "data depth+1",
        "POST",
        E,
        _event(data=_nested(MAX_DATA_DEPTH + 1)),
        400,
        f"nests deeper than {MAX_DATA_DEPTH}",
    ),
    Limit("event bytes", "POST", E, _event(data={"s": "x" * BIG}), 200),
    Limit(
        "event bytes+1",
        "POST",
        E,
        _event(data={"s": "x" * (BIG + 1)}),
        400,
        f"{MAX_EVENT_BYTES}-byte limit",
    ),
    Limit("events body", "POST", E, _padded(CAP_EVENT, EVENTS_CAP), 200),
    Limit("events body+1", "POST", E, _padded(CAP_EVENT, EVENTS_CAP + 1), 413, "limit"),
    # registration, invocation
    Limit(
        "register body",
        "POST",
        "/fn/register",
        _padded(b"{}", limits.REGISTER_BODY_BYTES),
        400,
        None,
        "body is over",
    ),
    Limit(
        "register body+1",
        "POST",
        "/fn/register",
        _padded(b"{}", limits.REGISTER_BODY_BYTES + 1),
        413,
        "limit",
    ),
    Limit(
        "register depth",
        "POST",
        "/fn/register",
        orjson.dumps(_nested(limits.MAX_BODY_DEPTH)),
        400,
        None,
        "nests deeper",
    ),
    Limit(
        "register depth+1",
        "POST",
        "/fn/register",
        orjson.dumps(_nested(limits.MAX_BODY_DEPTH + 1)),
        400,
        "nests deeper than",
    ),
    Limit("invoke body", "POST", f"/invoke/{SLUG}", _padded(b"{}", limits.INVOKE_BODY_BYTES), 200),
    Limit(
        "invoke body+1",
        "POST",
        f"/invoke/{SLUG}",
        _padded(b"{}", limits.INVOKE_BODY_BYTES + 1),
        413,
        "limit",
    ),
    Limit(
        "invoke depth",
        "POST",
        f"/invoke/{SLUG}",
        orjson.dumps({"data": _nested(MAX_DATA_DEPTH)}),
        200,
    ),
    Limit(
        "invoke depth+1",
        "POST",
        f"/invoke/{SLUG}",
        orjson.dumps({"data": _nested(MAX_DATA_DEPTH + 1)}),
        400,
        "nests deeper",
    ),
    # GraphQL
    Limit(
        "gql body",
        "POST",
        "/v0/gql",
        _padded(_gql("{ apps { name } }"), limits.GRAPHQL_BODY_BYTES),
        200,
    ),
    Limit(
        "gql body+1",
        "POST",
        "/v0/gql",
        _padded(_gql("{ apps { name } }"), limits.GRAPHQL_BODY_BYTES + 1),
        413,
        "limit",
    ),
    Limit("query bytes", "POST", "/v0/gql", _gql(_query_bytes(gql_limits.MAX_QUERY_BYTES)), 200),
    Limit(
        "query bytes+1",
        "POST",
        "/v0/gql",
        _gql(_query_bytes(gql_limits.MAX_QUERY_BYTES + 1)),
        400,
        "bytes, over the limit",
    ),
    Limit(
        "tokens", "POST", "/v0/gql", _gql(_tokens(gql_limits.MAX_TOKENS)), 200, None, "max tokens"
    ),
    Limit(
        "tokens+1", "POST", "/v0/gql", _gql(_tokens(gql_limits.MAX_TOKENS + 1)), 200, "(max tokens)"
    ),
    Limit("nesting", "POST", "/v0/gql", _gql(_nesting(gql_limits.MAX_NESTING)), 200),
    Limit(
        "nesting+1",
        "POST",
        "/v0/gql",
        _gql(_nesting(gql_limits.MAX_NESTING + 1)),
        200,
        "(max nesting)",
    ),
    Limit("depth", "POST", "/v0/gql", _gql(_depth(gql_limits.MAX_DEPTH)), 200),
    Limit("depth+1", "POST", "/v0/gql", _gql(_depth(gql_limits.MAX_DEPTH + 1)), 200, "(max depth)"),
    Limit("aliases", "POST", "/v0/gql", _gql(_aliases(gql_limits.MAX_ALIASES)), 200),
    Limit(
        "aliases+1",
        "POST",
        "/v0/gql",
        _gql(_aliases(gql_limits.MAX_ALIASES + 1)),
        200,
        "(max aliases)",
    ),
    Limit("fields", "POST", "/v0/gql", _gql(_fields(gql_limits.MAX_FIELDS)), 200),
    Limit(
        "fields+1", "POST", "/v0/gql", _gql(_fields(gql_limits.MAX_FIELDS + 1)), 200, "(max fields)"
    ),
    Limit(
        "page",
        "POST",
        "/v0/gql",
        _gql(f"{{ runs(first: {gql_limits.MAX_PAGE}) {{ edges {{ cursor }} }} }}"),
        200,
    ),
    Limit(
        "page+1",
        "POST",
        "/v0/gql",
        _gql(f"{{ runs(first: {gql_limits.MAX_PAGE + 1}) {{ edges {{ cursor }} }} }}"),
        200,
        "'first' must be between",
    ),
    Limit(
        "page 0",
        "POST",
        "/v0/gql",
        _gql("{ runs(first: 0) { edges { cursor } } }"),
        200,
        "'first' must be between",
    ),
    Limit(
        "events page",
        "POST",
        "/v0/gql",
        _gql(f"{{ events(query: {{limit: {gql_limits.MAX_PAGE}}}) {{ id }} }}"),
        200,
    ),
    Limit(
        "events page+1",
        "POST",
        "/v0/gql",
        _gql(f"{{ events(query: {{limit: {gql_limits.MAX_PAGE + 1}}}) {{ id }} }}"),
        200,
        "'limit' must be between",
    ),
    Limit("list items", "POST", "/v0/gql", _gql(_ids(gql_limits.MAX_LIST_ITEMS)), 200),
    Limit(
        "list items+1",
        "POST",
        "/v0/gql",
        _gql(_ids(gql_limits.MAX_LIST_ITEMS + 1)),
        200,
        f"over the limit of {gql_limits.MAX_LIST_ITEMS}",
    ),
    Limit(
        "int past 32 bits",
        "POST",
        "/v0/gql",
        _gql(f"{{ runs(first: {2**31}) {{ edges {{ cursor }} }} }}"),
        200,
        "Int cannot represent",
    ),
]


@pytest.fixture(scope="module", params=["dev", "start"])
def server(request: pytest.FixtureRequest, servers: Servers) -> Iterator[Server]:
    live = servers.socket(request.param)
    yield live
    live.assert_no_server_errors()
    live.assert_unchanged()


def _messages(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    messages = [str(e.get("message", "")) for e in body.get("errors") or [] if isinstance(e, dict)]
    if isinstance(body.get("error"), str):
        messages.append(body["error"])
    return messages


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.label for limit in LIMITS])
def test_at_and_past_each_limit(server: Server, limit: Limit) -> None:
    headers = {**server.auth, "content-type": "application/json"}
    raw = request_bytes(limit.method, limit.path, headers=headers, body=limit.body)
    answer = attack(server, raw, method=limit.method, expect={limit.status})
    messages = _messages(answer.json())
    if limit.says is not None:
        assert any(limit.says in message for message in messages), (limit.says, messages[:3])
    elif limit.quiet is not None:
        assert not any(limit.quiet in message for message in messages), messages[:3]
    elif limit.status == 200:
        assert not messages, messages[:3]
