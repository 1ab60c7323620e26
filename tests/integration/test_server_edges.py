"""The server's API probed as an attacker would: malformed, oversized and out-of-range
input gets a 4xx naming the problem, a body is never buffered past its cap, no stored row
breaks a listing, and nothing escapes as a dropped connection."""

from __future__ import annotations

import contextlib
import http.client
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import ulid
from openapi_spec_validator import validate
from starlette.routing import Route

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.server import limits
from mainspring.server.app import MAX_BODY_BYTES, create_app
from tests.e2e.support import on_uvicorn

NOW_MS = 1_700_000_000_000


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@contextlib.asynccontextmanager
async def server(tmp_path: pathlib.Path) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        yield engine, http


# -- timestamps, depth, ids: refused at intake, named --------------------------------------


@pytest.mark.parametrize(
    "ts",
    [b"9223372036854775808", b"1e20", b"1" + b"0" * 29, b'"1' + b"0" * 29 + b'"', b"-1", b"1.5"],
)
async def test_out_of_range_ts_is_a_400_naming_the_field(tmp_path: pathlib.Path, ts: bytes) -> None:
    async with server(tmp_path) as (engine, http):
        answer = await http.post("/e/key", content=b'{"name": "go", "ts": ' + ts + b"}")
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("event 0: ts: "), answer.text
        assert answer.json()["ids"] == []
        assert await engine.events() == []


async def test_a_plausible_ts_is_kept(tmp_path: pathlib.Path) -> None:
    async with server(tmp_path) as (_, http):
        sent = await http.post("/e/key", json={"name": "go", "ts": NOW_MS})
        [event_id] = sent.json()["ids"]
        assert (await http.get(f"/v1/events/{event_id}")).json()["data"]["ts"] == NOW_MS


async def test_deeply_nested_data_is_refused_and_the_listing_still_works(
    tmp_path: pathlib.Path,
) -> None:
    async with server(tmp_path) as (engine, http):
        for levels in (101, 253, 600):
            body = (
                orjson.dumps({"name": "go", "data": nested(levels)})
                if levels < 254
                else (b'{"name": "go", "data": ' + b'{"a": ' * (levels - 1) + b"{}" + b"}" * levels)
            )
            answer = await http.post("/e/key", content=body)
            assert answer.status_code == 400, answer.text
            assert "data: nests deeper than 100 levels" in answer.json()["error"]
        assert await engine.events() == []
        ok = await http.post("/e/key", content=orjson.dumps({"name": "go", "data": nested(100)}))
        assert ok.status_code == 200, ok.text
        assert (await http.get("/v1/events")).status_code == 200


async def test_a_stored_row_that_cannot_be_encoded_does_not_break_reads(
    tmp_path: pathlib.Path,
) -> None:
    """A row from before the depth limit (or written by other means) still lists."""
    async with server(tmp_path) as (_, http):
        good = (await http.post("/e/key", json={"name": "go"})).json()["ids"][0]
        poison = str(ulid.ULID())
        with contextlib.closing(sqlite3.connect(tmp_path / "s.db")) as db:
            db.execute(
                "INSERT INTO events (internal_id, id, name, data, ts, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (poison, poison, "go", orjson.dumps(nested(253)), NOW_MS, NOW_MS),
            )
            db.commit()
        listed = await http.get("/v1/events")
        assert listed.status_code == 200, listed.text
        assert {e["internal_id"] for e in listed.json()["data"]} == {good, poison}
        single = await http.get(f"/v1/events/{poison}")
        assert single.status_code == 200, single.text
        assert single.json()["data"]["internal_id"] == poison


async def test_over_long_id_and_name_are_refused(tmp_path: pathlib.Path) -> None:
    async with server(tmp_path) as (_, http):
        answer = await http.post("/e/key", json={"name": "go", "id": "i" * 600})
        assert answer.status_code == 400
        assert "id: " in answer.json()["error"]
        answer = await http.post("/e/key", json={"name": "n" * 600})
        assert answer.status_code == 400
        assert "name" in answer.json()["error"]


# -- list parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit", ["-1", "0", "1001", "-99999999999999999999", "99999999999999999999", "abc", "1.5", ""]
)
async def test_limit_out_of_range_is_a_400(tmp_path: pathlib.Path, limit: str) -> None:
    async with server(tmp_path) as (_, http):
        await http.post("/e/key", json={"name": "go"})
        answer = await http.get("/v1/events", params={"limit": limit})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("limit: "), answer.text


@pytest.mark.parametrize("cursor", ["nope", "' OR 1=1 --", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "0" * 27])
async def test_a_cursor_must_be_a_ulid(tmp_path: pathlib.Path, cursor: str) -> None:
    async with server(tmp_path) as (_, http):
        answer = await http.get("/v1/events", params={"cursor": cursor})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("cursor: "), answer.text


async def test_limit_and_cursor_page_through_events(tmp_path: pathlib.Path) -> None:
    async with server(tmp_path) as (_, http):
        sent = (await http.post("/e/key", json=[{"name": "go"}] * 5)).json()["ids"]
        first = (await http.get("/v1/events", params={"limit": "2"})).json()["data"]
        assert [e["internal_id"] for e in first] == sent[::-1][:2]
        cursor = first[-1]["internal_id"].lower()  # ULIDs are case-insensitive
        rest = (await http.get("/v1/events", params={"limit": "1000", "cursor": cursor})).json()
        assert [e["internal_id"] for e in rest["data"]] == sent[::-1][2:]


# -- bodies: capped before they are read ---------------------------------------------------


async def call_asgi(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: Iterable[bytes]
) -> tuple[int, dict[str, str], bytes, int]:
    """One request straight through ASGI; (status, headers, body, bytes the app pulled)."""
    pending = iter(chunks)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(pending, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("server", 80),
    }
    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    names = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], names, body, pulled


CAPS = {
    "/e/key": limits.EVENTS_BODY_BYTES,
    "/fn/register": limits.REGISTER_BODY_BYTES,
    "/invoke/f": limits.INVOKE_BODY_BYTES,
    "/v0/gql": limits.GRAPHQL_BODY_BYTES,
}


def endless(chunk: bytes) -> Iterator[bytes]:
    """``chunk`` again and again, 64 MiB in all (far past every cap)."""
    for _ in range(64 * 2**20 // len(chunk)):
        yield chunk


@pytest.mark.parametrize("path", ["/e/key", "/fn/register", "/invoke/f", "/v0/gql"])
async def test_a_declared_length_over_the_cap_is_a_413_before_reading(
    tmp_path: pathlib.Path, path: str
) -> None:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    app = create_app(engine)
    async with engine:
        headers = [(b"content-length", str(100 * 2**20).encode())]
        chunks = endless(b"x" * 65536)
        status, names, body, pulled = await call_asgi(app, "POST", path, headers, chunks)
    assert status == 413
    assert pulled == 0
    assert names["connection"] == "close"
    assert names["x-inngest-server-kind"] == "dev"
    assert "limit" in orjson.loads(body)["error"]


@pytest.mark.parametrize("path", ["/e/key", "/fn/register", "/invoke/f", "/v0/gql"])
async def test_a_streamed_body_stops_being_read_past_the_cap(
    tmp_path: pathlib.Path, path: str
) -> None:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    app = create_app(engine)
    chunk = b"x" * 65536
    async with engine:
        status, names, _, pulled = await call_asgi(app, "POST", path, [], endless(chunk))
    assert status == 413
    assert names["connection"] == "close"
    cap = CAPS[path]
    assert cap < pulled <= cap + len(chunk)
    assert cap <= MAX_BODY_BYTES


async def test_events_have_a_larger_cap_than_invoke(tmp_path: pathlib.Path) -> None:
    async with server(tmp_path) as (_, http):
        blob = {"name": "go", "data": {"s": "x" * (2 * 2**20)}}
        answer = await http.post("/e/key", json=blob)
        assert answer.status_code == 400  # read, then refused as an over-large event
        assert "byte limit" in answer.json()["error"]
        answer = await http.post("/invoke/f", json={"data": {"s": "x" * (2 * 2**20)}})
        assert answer.status_code == 413


# -- malformed input on every route: 4xx, never 500 ----------------------------------------

MALFORMED: list[tuple[str, str, bytes | None, int]] = [
    ("POST", "/e/key", b"", 400),
    ("POST", "/e/key", b"{", 400),
    ("POST", "/e/key", b"\xff\xfe", 400),
    ("POST", "/e/key", b"123", 400),
    ("POST", "/e/key", b'{"name": 1}', 400),
    ("POST", "/e/key", b'{"name": "x", "data": [1]}', 400),
    ("POST", "/e/key", b'{"name": "x", "data": "s"}', 400),
    ("POST", "/e/key", b'{"name": "x", "id": {}}', 400),
    ("POST", "/e/key", b'{"name": "x", "id": 7}', 400),
    ("POST", "/e/key", b'{"name": "x", "ts": "soon"}', 400),
    ("POST", "/e/key", b'{"name": "x", "ts": true}', 400),
    ("POST", "/e/key", b"[" + b'{"name": "x"},' * 5000 + b'{"name": "x"}]', 400),
    ("POST", "/fn/register", b"not json", 400),
    ("POST", "/fn/register", b"[]", 400),
    ("POST", "/fn/register", b'"app"', 400),
    ("POST", "/fn/register", b"[" * 300 + b"]" * 300, 400),
    ("POST", "/invoke/f", b"{", 400),
    ("POST", "/invoke/f", b"[]", 400),
    ("POST", "/invoke/f", b'{"data": 1}', 400),
    ("POST", "/invoke/f", b'{"data": ' + b'{"a": ' * 200 + b"{}" + b"}" * 201, 400),
    ("POST", "/invoke/f", b"{}", 404),
    ("DELETE", "/fn/remove", None, 400),
    ("DELETE", "/fn/remove?url=http://nowhere", None, 404),
    ("GET", "/v1/events?limit=x", None, 400),
    ("GET", "/v1/events?cursor=x", None, 400),
    ("GET", "/v1/events/nope", None, 404),
    ("GET", "/v1/runs/nope", None, 404),
    ("DELETE", "/v1/runs/nope", None, 404),
    ("GET", "/v1/runs/nope/jobs", None, 404),
    ("DELETE", "/v0/runs/nope", None, 404),
    ("GET", "/v0/runs/nope/batch", None, 410),
    ("GET", "/v0/runs/nope/actions", None, 410),
    ("GET", "/v1/apps/nope/functions", None, 404),
    ("GET", "/v0/gql?query=%7B&variables=notjson", None, 400),
    ("POST", "/v0/gql", b"{", 400),
    ("POST", "/v0/gql", b"[]", 400),
    ("PUT", "/e/key", b"{}", 405),
    ("GET", "/no/such/route", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), MALFORMED)
async def test_malformed_input_gets_a_json_4xx(
    tmp_path: pathlib.Path, method: str, path: str, body: bytes | None, status: int
) -> None:
    async with server(tmp_path) as (_, http):
        answer = await http.request(method, path, content=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-inngest-server-kind"] == "dev"
    assert "connection" not in answer.headers
    problem = answer.json()
    assert problem.get("error") or problem.get("errors")  # GraphQL's own error shape


async def test_a_405_lists_every_method_of_the_path(tmp_path: pathlib.Path) -> None:
    async with server(tmp_path) as (_, http):
        answer = await http.put("/v1/runs/nope")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


# -- unexpected errors: a JSON 500 that keeps the connection -------------------------------


async def test_an_unexpected_error_is_a_json_500_and_does_not_escape(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with server(tmp_path) as (engine, http):

        async def broken(**_: Any) -> Any:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(engine, "events", broken)
        # ASGITransport re-raises whatever escapes the app: nothing does.
        answer = await http.get("/v1/events")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-inngest-server-kind"] == "dev"
    assert "connection" not in answer.headers
    assert answer.json() == {"error": "internal server error", "status": 500}


@pytest.mark.parametrize("http_impl", ["h11", "httptools"])
def test_the_connection_survives_a_500_and_4xxs(tmp_path: pathlib.Path, http_impl: str) -> None:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")

    async def broken(**_: Any) -> Any:
        raise RuntimeError("disk on fire")

    engine.events = broken  # type: ignore[method-assign]
    app = create_app(engine)
    with on_uvicorn(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.connect()
        sock = conn.sock
        for method, path, body, status in [
            ("GET", "/v1/events", None, 500),
            ("GET", "/health", None, 200),
            ("POST", "/e/key", b"{", 400),
            ("GET", "/v1/events?limit=-1", None, 400),
            ("GET", "/nowhere", None, 404),
            ("GET", "/health", None, 200),
        ]:
            conn.request(method, path, body=body)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == status, (method, path)
            assert answer.getheader("connection") != "close", (method, path)
            assert conn.sock is sock, f"the connection was dropped after {method} {path}"
        conn.close()


# -- OpenAPI -------------------------------------------------------------------------------


async def test_the_openapi_document_is_valid_and_describes_every_route(
    tmp_path: pathlib.Path,
) -> None:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    app = create_app(engine)
    transport = httpx.ASGITransport(app=app)
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    assert document["openapi"].startswith("3.")
    routed = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert routed == described
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "500" in operation["responses"], (path, method)
            assert operation.get("operationId"), (path, method)


async def test_self_hosted_openapi_documents_bearer_auth(tmp_path: pathlib.Path) -> None:
    key = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    app = create_app(engine, dev=False, signing_key=key, event_keys=frozenset({"ek"}))
    transport = httpx.ASGITransport(app=app)
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        document = (await http.get("/openapi.json")).json()
    validate(document)
    assert "bearerAuth" in document["components"]["securitySchemes"]
    assert "401" in document["paths"]["/v1/events"]["get"]["responses"]
    assert "401" in document["paths"]["/e/{key}"]["post"]["responses"]
    assert document["paths"]["/health"]["get"].get("security") == []
