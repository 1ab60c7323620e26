"""The servers the fuzz suite attacks, what it stores in them first, and how it talks to them.

Two kinds of server, as ``mainspring dev`` (no authentication) and ``mainspring start``
(a signing key on every route, an event key on ``/e``), each reached two ways:

* in process, through ASGI (schemathesis's own client, whose event loop also runs the
  engine): fast, for the large schema-driven runs;
* over a real socket, on uvicorn in a thread: for the checks that need one, that a
  connection survives every answer and that malformed HTTP framing is refused cleanly.

Every app is wrapped in :class:`Tally`, which counts the requests that reach it and their
statuses: its count of 5xx is the suite's verdict, whatever the client saw.

Before any fuzzing each server is given known data (:func:`seed`): an event whose run
completed, one whose run is asleep for a week, an event with awkward data, an app synced
over ``/fn/register``. :func:`read_back` reads all of it through REST and GraphQL; the
fuzz tests compare that reading before and after each barrage, exactly.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol

import orjson
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mainspring
from mainspring.engine.engine import Engine
from mainspring.server.app import create_app

# -- budget --------------------------------------------------------------------------------

#: Hypothesis examples per property test (and per API operation for schemathesis) in a
#: default run; tests scale it by their weight. ``MAINSPRING_FUZZ_EXAMPLES`` sets it;
#: ``MAINSPRING_FUZZ=long`` sets it to :data:`LONG_EXAMPLES`.
DEFAULT_EXAMPLES: Final = 25
#: The long run (``scripts/fuzz``): some 100,000 requests across the suite.
LONG_EXAMPLES: Final = 500


def examples(weight: float = 1.0) -> int:
    """How many examples a test with this weight runs (at least 1)."""
    raw = os.environ.get("MAINSPRING_FUZZ_EXAMPLES")
    if raw:
        base = int(raw)
    elif os.environ.get("MAINSPRING_FUZZ", "").lower() == "long":
        base = LONG_EXAMPLES
    else:
        base = DEFAULT_EXAMPLES
    return max(1, round(base * weight))


#: Longest any single answer may take, in seconds (the worst GraphQL query the limits allow
#: takes under 2 s on a 2-core machine); past it the request counts as a hang.
ANSWER_WITHIN: Final = 10.0

# -- credentials ---------------------------------------------------------------------------

SIGNING_KEY: Final = "signkey-test-" + "5eed" * 16
#: Well-formed, but not the server's.
WRONG_SIGNING_KEY: Final = "signkey-test-" + "bad0" * 16
EVENT_KEY: Final = "fuzz-event-key"

# -- counting ------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """Counts what reaches an app: requests, their statuses, the slowest answer; records
    every 5xx (method, path, status) for the report."""

    requests: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    server_errors: list[str] = dataclasses.field(default_factory=list)
    slowest: float = 0.0
    slowest_request: str = ""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.server_errors.extend(other.server_errors)
        if other.slowest > self.slowest:
            self.slowest, self.slowest_request = other.slowest, other.slowest_request

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app``, with every HTTP request through it counted."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.monotonic()
            status: list[int] = []

            async def watched(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            try:
                await app(scope, receive, watched)
            finally:
                took = time.monotonic() - started
                code = status[0] if status else 599  # no answer at all: as bad as a 5xx
                what = f"{scope['method']} {scope['path']}"[:80]
                with self.lock:
                    self.requests += 1
                    self.statuses[code] += 1
                    if code >= 500:
                        self.server_errors.append(f"{code} {what}")
                    if took > self.slowest:
                        self.slowest, self.slowest_request = took, what

        return counted

    def summary(self) -> str:
        by_class = collections.Counter(f"{code // 100}xx" for code in self.statuses.elements())
        classes = ", ".join(f"{name}: {count}" for name, count in sorted(by_class.items()))
        return (
            f"{self.requests} requests ({classes}); 5xx: {len(self.server_errors)}; "
            f"slowest answer {self.slowest * 1000:.0f} ms ({self.slowest_request})"
        )


#: Everything every server of the session saw, for the closing summary.
SESSION = Tally()
#: Requests sent, by purpose: "fuzz" (generated), "probe" (does the connection still
#: serve?), "read-back" (seeding and reading the seeded data back).
SENT: collections.Counter[str] = collections.Counter()

# -- the servers' own functions ------------------------------------------------------------

APP_ID: Final = "fuzz-keep-app"


async def _finishes(ctx: mainspring.Context) -> dict[str, Any]:
    greeting = await ctx.step.run("greet", lambda: {"text": "héllo ✓ \u2028", "n": 2**53 + 1})
    return {"greeting": greeting, "nested": {"list": [1, 2.5, None, True, "x"]}}


async def _sleeps(ctx: mainspring.Context) -> None:
    await ctx.step.run("before", lambda: "awake")
    await ctx.step.sleep("nap", datetime.timedelta(days=7))


def functions() -> tuple[mainspring.Client, list[mainspring.Function[Any]]]:
    """The servers' own app (a client serves one engine, so each server gets its own):
    a function that completes, one that sleeps for a week."""
    client = mainspring.Client(app_id=APP_ID, is_production=False)
    finish = mainspring.TriggerEvent(event="fuzz-keep/finish")
    sleep = mainspring.TriggerEvent(event="fuzz-keep/sleep")
    return client, [
        client.create_function(fn_id="finishes", trigger=finish)(_finishes),
        client.create_function(fn_id="sleeps", trigger=sleep)(_sleeps),
    ]


#: The app synced over HTTP: nothing listens at its URL, and no event starts its function.
REMOTE_APP: Final = "fuzz-keep-remote"
REMOTE_URL: Final = "http://127.0.0.1:9/fuzz-keep/api/inngest"
REMOTE_BODY: Final[dict[str, Any]] = {
    "url": REMOTE_URL,
    "appName": REMOTE_APP,
    "deployType": "ping",
    "framework": "fuzz",
    "sdk": "py:v0.0.1",
    "v": "0.1",
    "functions": [
        {
            "id": f"{REMOTE_APP}-hook",
            "name": "Hook ✓",
            "triggers": [{"event": "fuzz-keep/never-sent", "expression": "event.data.n > 1"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{REMOTE_URL}?fnId=hook&step=step"},
                    "retries": {"attempts": 2},
                }
            },
        }
    ],
}

#: Marks everything seeded: no fuzz request may delete or replace what carries it (see
#: :meth:`Seeded.protects`), so that a change to seeded data can only be a server bug.
KEEP: Final = "fuzz-keep"


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "deep"}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


#: Data that is awkward to store and answer: deep (at the limit), unicode, big numbers.
AWKWARD_DATA: Final[dict[str, Any]] = {
    "deep": _nested(99),
    "unicode": 'ünïcödé ✓ 𝄞 \u0000 \u2028\u2029 "quoted" \\ back',
    "numbers": [0, -1, 2**63 - 1, -(2**63), 1.5e300, -0.0, 1e-300],
    "empty": {"": [], "list": [{}], "null": None},
}

# -- talking to a server -------------------------------------------------------------------


class Api(Protocol):
    """Requests to one server, as a test client sees them (status and decoded body)."""

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]: ...


def _decoded(content: bytes) -> Any:
    return orjson.loads(content) if content else None


class AsgiApi:
    """Calls through schemathesis's ASGI client (a ``requests`` session run on its loop)."""

    base_url = "http://testserver"

    def __init__(self, session: Any, auth: Mapping[str, str]) -> None:
        self.session = session
        self.auth = dict(auth)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        content = None if body is None else orjson.dumps(body)
        sent = {**self.auth, "content-type": "application/json", **(headers or {})}
        SENT["read-back"] += 1
        answer = self.session.request(
            method, path, data=content, headers=sent, timeout=ANSWER_WITHIN
        )
        return int(answer.status_code), _decoded(answer.content)


class SocketApi:
    """Calls to a live server, each on a connection of its own (for seeding and reading
    back; the fuzz tests keep theirs alive and watch them)."""

    def __init__(self, port: int, auth: Mapping[str, str]) -> None:
        self.port = port
        self.auth = dict(auth)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        content = None if body is None else orjson.dumps(body)
        sent = {**self.auth, "content-type": "application/json", **(headers or {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_WITHIN)
        SENT["read-back"] += 1
        try:
            conn.request(method, path, body=content, headers=sent)
            answer = conn.getresponse()
            return answer.status, _decoded(answer.read())
        finally:
            conn.close()


# -- the seeded data -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seeded:
    """The ids of what :func:`seed` stored."""

    finish_event: str
    sleep_event: str
    awkward_event: str
    finished_run: str
    sleeping_run: str

    @property
    def event_ids(self) -> tuple[str, ...]:
        return (self.finish_event, self.sleep_event, self.awkward_event)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return (self.finished_run, self.sleeping_run)

    def protects(self, text: str) -> bool:
        """Whether a request naming ``text`` (a path parameter, a query value, a body)
        could legitimately delete or replace seeded data: ids compare case-insensitively
        and trimmed (ULIDs are case-insensitive), names and URLs by the :data:`KEEP` mark."""
        folded = text.strip().casefold()
        if KEEP in folded:
            return True
        return any(known.casefold() in folded for known in (*self.event_ids, *self.run_ids))


def _wait(what: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _send(api: Api, key: str, event: dict[str, Any]) -> str:
    status, answer = api.call("POST", f"/e/{key}", body=event)
    assert status == 200, answer
    [event_id] = answer["ids"]
    assert isinstance(event_id, str)
    return event_id


def _only_run(api: Api, event_id: str) -> str:
    found: list[str] = []

    def started() -> bool:
        status, answer = api.call("GET", f"/v1/events/{event_id}/runs")
        assert status == 200, answer
        found[:] = [run["run_id"] for run in answer["data"]]
        return bool(found)

    _wait(f"event {event_id} started a run", started)
    [run_id] = found
    return run_id


def seed(api: Api, event_key: str) -> Seeded:
    """Store the known data through the API, and wait until the runs have settled: one
    completed, one asleep (its wake-up job queued)."""
    status, answer = api.call("POST", "/fn/register", body=REMOTE_BODY)
    assert status == 200, answer
    finish_event = _send(api, event_key, {"name": "fuzz-keep/finish", "data": {"n": 1}})
    sleep_event = _send(
        api, event_key, {"name": "fuzz-keep/sleep", "id": "fuzz-keep-idem", "ts": 1_700_000_000_000}
    )
    awkward_event = _send(api, event_key, {"name": "fuzz-keep/awkward ✓", "data": AWKWARD_DATA})
    finished_run = _only_run(api, finish_event)
    sleeping_run = _only_run(api, sleep_event)

    def finished() -> bool:
        status = api.call("GET", f"/v1/runs/{finished_run}")[1]["data"]["status"]
        return bool(status == "Completed")

    def asleep() -> bool:
        jobs = api.call("GET", f"/v1/runs/{sleeping_run}/jobs")[1]["data"]
        return [job["kind"] for job in jobs] == ["sleep"]

    _wait("the finishing run completed", finished)
    _wait("the sleeping run is asleep", asleep)
    return Seeded(finish_event, sleep_event, awkward_event, finished_run, sleeping_run)


_RUN_FIELDS = "id status functionID sourceID triggerIDs queuedAt startedAt endedAt output"
_SPAN_FIELDS = (
    "spanID runID traceID name status attempts queuedAt startedAt endedAt duration outputID "
    "stepID isRoot parentSpanID"
)
_READ_BACK = f"""
query ReadBack($finished: String!, $sleeping: String!) {{
  finished: run(runID: $finished) {{ {_RUN_FIELDS} }}
  sleeping: run(runID: $sleeping) {{ {_RUN_FIELDS} }}
  finishedTrace: runTrace(runID: $finished) {{
    {_SPAN_FIELDS} childrenSpans {{ {_SPAN_FIELDS} childrenSpans {{ {_SPAN_FIELDS} }} }}
  }}
  finishedTrigger: runTrigger(runID: $finished) {{
    IDs payloads timestamp eventName isBatch batchID cron
  }}
  sleepingTrigger: runTrigger(runID: $sleeping) {{ IDs payloads timestamp eventName }}
  apps {{
    name url sdkLanguage
    functions {{ id slug name appName triggers {{ type value condition }} }}
  }}
}}
"""
_EVENT = """
query Event($id: ID!) {
  event(query: {eventId: $id}) {
    id externalID name createdAt payload raw totalRuns
    functionRuns { id status functionID eventID name startedAt finishedAt output }
  }
}
"""


def _gql(api: Api, query: str, variables: dict[str, Any]) -> Any:
    status, answer = api.call("POST", "/v0/gql", body={"query": query, "variables": variables})
    assert status == 200, answer
    assert "errors" not in answer, answer
    return answer["data"]


def read_back(api: Api, seeded: Seeded) -> dict[str, Any]:
    """Everything seeded, as REST and GraphQL answer it (only seeded apps are kept from
    the lists: the fuzz may add others)."""
    reads: dict[str, Any] = {}
    paths = [f"/v1/apps/{name}/functions" for name in (APP_ID, REMOTE_APP)]
    for event_id in seeded.event_ids:
        paths += [f"/v1/events/{event_id}", f"/v1/events/{event_id}/runs"]
    for run_id in seeded.run_ids:
        paths += [f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/jobs"]
        paths += [f"/v0/runs/{run_id}/batch", f"/v0/runs/{run_id}/actions"]
    for name in ("fuzz-keep/finish", "fuzz-keep/sleep"):
        paths.append(f"/v1/events?name={name}")
    for path in paths:
        reads[path] = api.call("GET", path)
    variables: dict[str, Any] = {
        "finished": seeded.finished_run,
        "sleeping": seeded.sleeping_run,
    }
    data = _gql(api, _READ_BACK, variables)
    data["apps"] = [app for app in data["apps"] if KEEP in app["name"]]
    reads["gql"] = data
    for event_id in seeded.event_ids:
        reads[f"gql event {event_id}"] = _gql(api, _EVENT, {"id": event_id})
    return reads


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What changed between two readings, key by key."""
    changed = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changed.append(f"{key}:\n  before: {before.get(key)!r}\n  after:  {after.get(key)!r}")
    return changed


@dataclasses.dataclass
class Server:
    """A seeded server under fuzz: its kind, its app, how to reach it."""

    kind: str
    app: ASGIApp
    tally: Tally
    seeded: Seeded
    snapshot: dict[str, Any]
    api: Api
    port: int | None = None

    @property
    def dev(self) -> bool:
        return self.kind == "dev"

    @property
    def auth(self) -> dict[str, str]:
        return {} if self.dev else {"authorization": f"Bearer {SIGNING_KEY}"}

    @property
    def event_key(self) -> str:
        return EVENT_KEY

    def assert_unchanged(self) -> None:
        """The seeded data reads back exactly as it did before the fuzzing."""
        changed = differences(self.snapshot, read_back(self.api, self.seeded))
        assert not changed, "stored data changed:\n" + "\n".join(changed)

    def assert_no_server_errors(self) -> None:
        assert not self.tally.server_errors, self.tally.server_errors


def make_app(kind: str, database: os.PathLike[str] | str, tally: Tally) -> tuple[ASGIApp, Engine]:
    """The server app of ``kind`` ("dev" or "start") on a fresh database, counted."""
    dev = kind == "dev"
    client, served = functions()
    engine = Engine(client, served, database=database, durability="normal")
    app = create_app(
        engine,
        dev=dev,
        event_keys=frozenset() if dev else frozenset({EVENT_KEY}),
        signing_key=None if dev else SIGNING_KEY,
    )
    return tally.wrap(app), engine


@contextlib.contextmanager
def live(app: ASGIApp) -> Iterator[int]:
    """``app`` on uvicorn (httptools, as ``mainspring dev`` picks) in a thread; its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        http="httptools",
        lifespan="on",
        # Idle connections are closed after 5 s by default: the tests that watch one
        # connection survive every answer must not see that as a drop when they pause.
        timeout_keep_alive=300,
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    _wait("uvicorn started", lambda: running.started or not thread.is_alive(), timeout=20)
    assert thread.is_alive(), "uvicorn stopped"
    try:
        yield port
    finally:
        running.should_exit = True
        thread.join(20)
