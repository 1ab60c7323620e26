"""Hypothesis against each public route of a live server, over one kept-alive connection:
malformed and hostile requests (random JSON shapes, edge values at and past every limit,
deep and huge documents, bytes that are not UTF-8, wrong content types, malformed
percent-escapes, lying ``Content-Length``).

Every answer is below 500 and among the route's expected statuses, comes in time, a 4xx
of the app is JSON naming the problem, and the connection serves another request after it
(see :func:`~tests.fuzz.wire.attack`). Where the outcome can be told from the input
alone (not JSON at all, a parameter out of range), the status must be the refusal. The
seeded data reads back unchanged after each test.

Registration bodies' content is fuzzed elsewhere
(``tests/integration/test_registration_validation.py``); here only the HTTP around it is.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mainspring.server import limits
from tests.fuzz import harness, wire
from tests.fuzz import strategies as hs
from tests.fuzz.conftest import Servers
from tests.fuzz.harness import Server
from tests.fuzz.wire import attack, request_bytes

KINDS = ["dev", "start"]

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(weight: float = 1.0) -> Callable[[F], F]:
    """Hypothesis settings for a fuzz test: its share of the budget, no deadline (a 3 MB
    body takes its time), no example database (no files, no replay between runs)."""
    return settings(
        max_examples=harness.examples(weight),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            # The `server` fixture is per test on purpose: its checks run after all examples.
            HealthCheck.function_scoped_fixture,
        ],
    )


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest, servers: Servers) -> Iterator[Server]:
    """A live server of each kind; its seeded data must read back unchanged after the
    test, and it must have answered no 5xx."""
    live = servers.socket(request.param)
    yield live
    live.assert_no_server_errors()
    live.assert_unchanged()


def _json_or_none(body: bytes) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None


# -- POST /e/{key} -------------------------------------------------------------------------


def _deep_event(text: str) -> bytes:
    return b'{"name": "fuzz/deep", "data": ' + text.encode() + b"}"


EVENT_BODIES = st.one_of(
    hs.encoded(st.one_of(hs.events(), st.lists(hs.events(), max_size=4), hs.JSON)),
    hs.NOT_JSON,
    hs.deep_json_text().map(_deep_event),
    hs.deep_json_text().map(str.encode),
    hs.big_array_text().map(str.encode),
)


@fuzz(weight=3)
@given(body=EVENT_BODIES, content_type=hs.CONTENT_TYPES, key=st.one_of(st.none(), hs.segment()))
def test_sending_events(
    server: Server, body: bytes, content_type: str | None, key: str | None
) -> None:
    assume(b"fuzz-keep" not in body)
    path = f"/e/{key if key is not None else server.event_key}"
    raw = request_bytes("POST", path, headers=hs.content_headers(content_type), body=body)
    answer = attack(server, raw, method="POST", expect={200, 400, 401, 404, 413})
    parsed, value = _json_or_none(body)
    if answer.status == 200:
        assert parsed, f"accepted a body that is not JSON: {body[:100]!r}"
        sent = value if isinstance(value, list) else [value]
        assert len(answer.json()["ids"]) == len(sent)
    elif not parsed and answer.status not in (307, 401, 404, 413):
        assert answer.status == 400
        assert "not valid JSON" in wire.problem_named(answer)


# -- POST /fn/register: the HTTP around the body -------------------------------------------


def _registration(name: str, port: int, trigger: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/inngest"
    return {
        "url": url,
        "appName": name,
        "functions": [
            {
                "id": f"{name}-fn",
                "triggers": [{"event": trigger}],
                "steps": {"step": {"runtime": {"type": "http", "url": url}}},
            }
        ],
    }


REGISTRATIONS = st.builds(
    _registration,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(
        lambda name: f"fuzz-reg-{name}"
    ),
    st.integers(1, 65535),
    st.sampled_from(["fuzz-reg/never", "fuzz-reg/*"]),
)


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` in chunked transfer encoding, cut at ``sizes``."""
    out, rest = b"", body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[: max(1, size)], rest[max(1, size) :]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    if rest:
        out += f"{len(rest):x}\r\n".encode() + rest + b"\r\n"
    return out + b"0\r\n\r\n"


@fuzz(weight=2)
@given(
    body=st.one_of(hs.encoded(REGISTRATIONS), hs.encoded(hs.JSON), hs.NOT_JSON),
    content_type=hs.CONTENT_TYPES,
    expected_kind=st.sampled_from([None, "dev", "cloud", "", "DEV", "é"]),
    chunks=st.one_of(st.none(), st.lists(st.integers(1, 64), max_size=8)),
)
def test_registering_over_odd_http(
    server: Server,
    body: bytes,
    content_type: str | None,
    expected_kind: str | None,
    chunks: list[int] | None,
) -> None:
    assume(b"fuzz-keep" not in body)
    headers = {**server.auth, **hs.content_headers(content_type)}
    if expected_kind is not None:
        headers["x-inngest-expected-server-kind"] = expected_kind
    if chunks is not None:
        headers["transfer-encoding"] = "chunked"
        raw = request_bytes("POST", "/fn/register", headers=headers, body=_chunked(body, chunks))
    else:
        raw = request_bytes("POST", "/fn/register", headers=headers, body=body)
    answer = attack(server, raw, method="POST", expect={200, 400, 413})
    kind = "dev" if server.dev else "cloud"
    if expected_kind and expected_kind != kind:
        assert answer.status == 400
        assert "Expected server kind" in wire.problem_named(answer)
    elif not _json_or_none(body)[0]:
        assert answer.status == 400


# -- Content-Length and chunked framing that lie -------------------------------------------

POST_ROUTES = ["/e/fuzz-event-key", "/fn/register", "/invoke/fuzz-nothing", "/v0/gql"]


@fuzz(weight=1)
@given(
    path=st.sampled_from(POST_ROUTES),
    body=st.one_of(hs.encoded(hs.JSON), hs.NOT_JSON),
    lie=st.sampled_from(["short", "long", "not-a-number", "negative", "twice", "huge", "chunks"]),
    by=st.integers(1, 64),
)
def test_lying_about_the_body(server: Server, path: str, body: bytes, lie: str, by: int) -> None:
    """The server answers what it was sent, or closes the connection, but never hangs, never
    errs, and serves the next connection."""
    assume(lie != "short" or len(body) > by)
    headers = dict(server.auth)
    assert server.port is not None
    if lie == "long":
        # The body never comes: after the client closes its side, the server lets go.
        harness.SENT["fuzz"] += 1
        with socket.create_connection(
            ("127.0.0.1", server.port), timeout=harness.ANSWER_WITHIN
        ) as sock:
            sock.sendall(
                request_bytes(
                    "POST", path, headers=headers, body=body, content_length=len(body) + by
                )
            )
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass  # whatever it answers (nothing, or a 400), then the end of the stream
    elif lie == "short":
        # The rest of the body reads as the start of a next request, which the HTTP server
        # refuses (400) and closes the connection on, maybe before the app's answer goes
        # out: either answer may come first, and the connection is done for.
        raw = request_bytes("POST", path, headers=headers, body=body, content_length=len(body) - by)
        connection = wire.Wire(server.port)
        harness.SENT["fuzz"] += 1
        try:
            answer = connection.exchange(raw, method="POST")
        finally:
            connection.close()
        assert answer.status in {200, 400, 404, 413}, answer
    elif lie == "huge":
        raw = request_bytes("POST", path, headers=headers, body=body, content_length=10**15 + by)
        attack(server, raw, method="POST", expect={413})
    else:
        if lie == "not-a-number":
            headers["content-length"] = f"{len(body)}x"
        elif lie == "negative":
            headers["content-length"] = f"-{by}"
        elif lie == "twice":
            headers["content-length"] = f"{len(body)}, {len(body) + by}"
        else:
            headers["transfer-encoding"] = "chunked"
            body = f"{by:x}zz\r\n".encode() + body + b"\r\n0\r\n\r\n"
        raw = request_bytes("POST", path, headers=headers, body=body)
        wire.wire(server.port).close()
        answer = attack(server, raw, method="POST", expect={400}, may_close=True)
        assert answer.closes
    wire.wire(server.port).close()
    wire.wire(server.port).still_usable(server.auth)


# -- GET /v1/events and the other listings -------------------------------------------------


def _list_values(name: str) -> st.SearchStrategy[str]:
    if name == "limit":
        return st.one_of(
            hs.around(1, limits.MAX_LIMIT).map(str),
            hs.INTS.map(str),
            st.sampled_from(
                ["1.5", " 1", "+1", "0x10", "1e3", "\u0661\u0662", "０", "", "10000000"]
            ),
            hs.TEXT,
        )
    if name == "cursor":
        return st.one_of(
            hs.segment().map(urllib.parse.unquote), st.just("0" * 26), st.just("8" + "0" * 25)
        )
    return hs.TEXT


@fuzz(weight=2)
@given(query=hs.query_string(["limit", "cursor", "name"], _list_values))
# A request line past llhttp's 80 KiB: uvicorn refuses it before the app (found by the
# long run: a cursor of long text, percent-encoded).
@example(query="cursor=" + "%E2%82%AC" * 10_000)
def test_listing_events(server: Server, query: str) -> None:
    raw = request_bytes("GET", f"/v1/events?{query}", headers=server.auth)
    answer = attack(server, raw, method="GET", expect={200, 400})
    values = urllib.parse.parse_qs(query, keep_blank_values=True)
    if not answer.from_app:
        return  # refused by the HTTP server itself, which attack() allows for such heads
    if answer.status == 400:
        problem = wire.problem_named(answer)
        assert problem.startswith(("limit: ", "cursor: ")), problem
        return
    page = answer.json()["data"]
    limit = values.get("limit", [str(limits.DEFAULT_LIMIT)])[-1]
    assert len(page) <= int(limit)


@fuzz(weight=2)
@given(
    template=st.sampled_from(["/v1/events/{}", "/v1/events/{}/runs", "/v1/apps/{}/functions"]),
    data=st.data(),
)
def test_reading_by_id(server: Server, template: str, data: st.DataObject) -> None:
    known = [*server.seeded.event_ids, harness.APP_ID, harness.REMOTE_APP]
    value = data.draw(hs.segment(known), label="id")
    raw = request_bytes("GET", template.format(value), headers=server.auth)
    attack(server, raw, method="GET", expect={200, 404})


# -- the run routes ------------------------------------------------------------------------

RUN_ROUTES = {
    ("GET", "/v1/runs/{}"): {200, 404},
    ("DELETE", "/v1/runs/{}"): {200, 404},
    ("GET", "/v1/runs/{}/jobs"): {200, 404},
    ("DELETE", "/v0/runs/{}"): {204, 404},
    ("GET", "/v0/runs/{}/batch"): {200, 404, 410},
    ("GET", "/v0/runs/{}/actions"): {200, 404, 410},
}


@fuzz(weight=3)
@given(route=st.sampled_from(sorted(RUN_ROUTES)), data=st.data())
def test_the_run_routes(server: Server, route: tuple[str, str], data: st.DataObject) -> None:
    method, template = route
    value = data.draw(hs.segment(list(server.seeded.run_ids)), label="run id")
    if method == "DELETE":
        assume(not server.seeded.protects(urllib.parse.unquote(value)))
    raw = request_bytes(method, template.format(value), headers=server.auth)
    answer = attack(server, raw, method=method, expect=RUN_ROUTES[route])
    if answer.status in (200, 204) and method == "GET":
        # Found: only a seeded run can be (the fuzz starts none under a guessable id).
        found = urllib.parse.unquote(value).strip().upper()
        assert found in server.seeded.run_ids, found


# -- POST /invoke/{slug} -------------------------------------------------------------------

SLUGS = st.one_of(
    hs.segment(),
    st.sampled_from([f"{harness.APP_ID}-finishes", f"{harness.APP_ID}-sleeps"]),
)
INVOKE_BODIES = st.one_of(
    hs.encoded(st.one_of(hs.OBJECTS.map(lambda data: {"data": data}), hs.JSON, hs.events())),
    hs.NOT_JSON,
    hs.deep_json_text().map(lambda text: b'{"data": ' + text.encode() + b"}"),
    st.builds(
        lambda n: b'{"data": {"s": "' + b"x" * n + b'"}}',
        hs.around(limits.INVOKE_BODY_BYTES - 17, 512 * 1024),
    ),
)


@fuzz(weight=2)
@given(slug=SLUGS, body=st.one_of(st.none(), INVOKE_BODIES), content_type=hs.CONTENT_TYPES)
def test_invoking(server: Server, slug: str, body: bytes | None, content_type: str | None) -> None:
    headers = {**server.auth, **hs.content_headers(content_type)}
    raw = request_bytes("POST", f"/invoke/{slug}", headers=headers, body=body)
    answer = attack(server, raw, method="POST", expect={200, 400, 404, 413})
    if body and not _json_or_none(body)[0]:
        assert answer.status in (307, 400, 404, 413), answer


# -- DELETE /fn/remove?url= ----------------------------------------------------------------


def _url_values(name: str) -> st.SearchStrategy[str]:
    return st.one_of(
        hs.TEXT,
        st.builds("http://{}:{}/{}".format, hs.TEXT, hs.INTS, hs.TEXT),
        st.sampled_from(["http://127.0.0.1:9/", "HTTP://127.0.0.1:9/api/inngest", "file:///etc"]),
    )


@fuzz(weight=1)
@given(query=hs.query_string(["url"], _url_values))
def test_removing_apps(server: Server, query: str) -> None:
    assume(not server.seeded.protects(urllib.parse.unquote(query)))
    raw = request_bytes("DELETE", f"/fn/remove?{query}", headers=server.auth)
    answer = attack(server, raw, method="DELETE", expect={200, 400, 404})
    if "url=" not in query or all(v == "" for v in urllib.parse.parse_qs(query).get("url", [""])):
        assert answer.status in (400, 404)


# -- methods, headers, credentials ---------------------------------------------------------

PATHS = [
    "/health", "/openapi.json", "/dev", "/v0/gql", "/e/k", "/fn/register", "/fn/remove",
    "/invoke/x", "/v1/apps/x/functions", "/v1/events", "/v1/events/x", "/v1/events/x/runs",
    "/v1/runs/x", "/v1/runs/x/jobs", "/v0/runs/x", "/v0/runs/x/batch", "/v0/runs/x/actions",
    "/", "/v1", "/nowhere", "//health", "/health/", "/HEALTH", "/v1/runs/x/../../health",
    "/v1/runs", "/v1/functions", "/v1/apps", "/v1/cancellations", "/v1/runs/x/rerun",
    # The dashboard's pages (not its event stream, which answers for as long as it is read).
    "/runs", "/runs/x", "/events", "/events/x", "/functions", "/functions/x", "/apps",
    "/login", "/dashboard/static/dashboard.css", "/dashboard/static/nothing.js",
]  # fmt: skip

HEADER_NAMES = st.text(
    "abcdefghijklmnopqrstuvwxyz-0123456789!#$%&'*+.^_`|~", min_size=1, max_size=30
)
HEADER_VALUES = st.one_of(
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=50,
    ),
    st.builds(lambda n: "v" * n, st.sampled_from([1000, 8000])),
)


@fuzz(weight=2)
@given(
    method=st.sampled_from(
        ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "TRACE", "DELETE", "PROPFIND"]
    ),
    path=st.sampled_from(PATHS),
    extra=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
)
def test_odd_methods_paths_and_headers(
    server: Server, method: str, path: str, extra: dict[str, str]
) -> None:
    reserved = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}
    headers = {**{k: v for k, v in extra.items() if k.lower() not in reserved}, **server.auth}
    raw = request_bytes(method, path, headers=headers)
    # 303: a page sends a caller without a session to the login form, "/" to the runs.
    attack(server, raw, method=method, expect={200, 204, 303, 400, 401, 404, 405, 410})


AUTHORIZATIONS = st.one_of(
    st.sampled_from(
        [
            "",
            "Bearer",
            "Bearer ",
            f"bearer {harness.SIGNING_KEY}",
            f"BEARER  {harness.SIGNING_KEY}  ",
            f"Basic {harness.SIGNING_KEY}",
            f"Bearer {harness.SIGNING_KEY[:-1]}",
            f"Bearer {harness.SIGNING_KEY}0",
            f"Bearer {harness.WRONG_SIGNING_KEY}",
            f"Bearer {harness.SIGNING_KEY.upper()}",
            "Bearer signkey-test-",
            "Bearer " + "a" * 8000,
        ]
    ),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=80,
    ).map(lambda text: "Bearer " + text),
)


@fuzz(weight=1)
@given(authorization=AUTHORIZATIONS, key=st.one_of(st.just(harness.EVENT_KEY), hs.segment()))
def test_credentials(server: Server, authorization: str, key: str) -> None:
    headers = {"authorization": authorization}
    listed = attack(
        server,
        request_bytes("GET", "/v1/events?limit=1", headers=headers),
        method="GET",
        expect={200, 401},
    )
    if not server.dev:
        value = authorization.strip()
        valid = value[:7].lower() == "bearer " and value[7:].strip() == harness.SIGNING_KEY
        assert (listed.status == 200) == valid, (authorization, listed)
    sent = attack(
        server,
        request_bytes("POST", f"/e/{key}", headers=headers, body=b'{"name": "fuzz/credentials"}'),
        method="POST",
        expect={200, 401, 404},
    )
    if not server.dev and key != harness.EVENT_KEY:
        assert sent.status in (307, 401, 404), sent
