"""What one GraphQL request may cost (``/v0/gql``): the size of its text, its tokens, nesting,
depth, aliases and fields, checked before anything runs; list arguments capped; filters and
traces read in a fixed number of SQL statements whatever the page holds; stored data the
encoder cannot handle answered in a degraded form; and ``/health`` answering while the
worst query the limits allow runs against a real server.
"""

from __future__ import annotations

import asyncio
import gc
import json
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import httpx
import orjson
import pytest
import ulid

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.engine.records import RunStatus, StoredEvent
from mainspring.engine.store.contract import NewRun, Tx
from mainspring.engine.store.sqlite import SQLiteStore
from mainspring.protocol.opcodes import Opcode
from mainspring.server.app import create_app
from tests.e2e.support import ROOT, free_port, stop, wait_until_up

client = inngest.Client(app_id="limits-app", is_production=False)


@client.create_function(fn_id="work", trigger=inngest.TriggerEvent(event="limits/work"))
async def work(ctx: inngest.Context) -> int:
    return await ctx.step.run("one", lambda: 1)


#: What ``mainspring dev tests.integration.test_graphql_limits:functions`` serves.
functions = [work]


class Api:
    def __init__(self, http: httpx.AsyncClient, engine: Engine) -> None:
        self.http = http
        self.engine = engine

    async def post(self, query: str, **variables: Any) -> httpx.Response:
        return await self.http.post("/v0/gql", json={"query": query, "variables": variables})

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = await self.post(query, **variables)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.gql(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error(self, query: str, **variables: Any) -> str:
        """The single error a refused query gets (and no data at all)."""
        body = await self.gql(query, **variables)
        assert body.get("data") is None, body
        [error] = body["errors"]
        message: str = error["message"]
        return message

    def statements(self) -> list[str]:
        """From now on, every SQL statement the store's read connection runs."""
        seen: list[str] = []
        reader = cast(SQLiteStore, self.engine._store)._read
        assert reader is not None
        reader.set_trace_callback(seen.append)
        return seen


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[Api]:
    engine = Engine(client, functions, database=tmp_path / "limits.db", durability="normal")
    app = create_app(engine)
    async with (
        engine,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http,
    ):
        yield Api(http, engine)


# -- seeding the store directly (fast, and able to hold what intake would refuse) -------


def deep(levels: int) -> bytes:
    """A JSON object whose value nests ``levels`` lists deep."""
    return b'{"deep":' + b"[" * levels + b"]" * levels + b"}"


def _seed_unit(
    runs: Sequence[tuple[str, int]], *, now: int, output: bytes, event_data: bytes, memo: bytes
) -> Any:
    """A unit storing, for each ``(function_id, steps)``, an event and a finished run of
    it with that many recorded steps; returns ``[(event_id, run_id), ...]``."""

    def unit(tx: Tx) -> list[tuple[str, str]]:
        made = []
        for function_id, steps in runs:
            event_id, run_id = str(ulid.ULID()), str(ulid.ULID())
            event = StoredEvent(event_id, event_id, "limits/seeded", {}, now, now, event_data)
            tx.insert_event(event)
            events_json = b"[" + event.wire_json() + b"]"
            tx.create_run(NewRun(run_id, function_id, event_id, events_json, None, 1, now))
            for seq in range(steps):
                tx.save_step(
                    run_id,
                    f"step-{seq}",
                    memo,
                    seq=seq,
                    user_id=f"step {seq}",
                    op=Opcode.STEP_RUN.value,
                    at=now,
                    grouped=False,
                    started_at=now,
                )
            tx.finish_run(run_id, RunStatus.COMPLETED, output=output, error=None, at=now)
            made.append((event_id, run_id))
        return made

    return unit


async def seed(
    engine: Engine,
    runs: Sequence[tuple[str, int]],
    *,
    output: bytes = b'{"ok":true}',
    event_data: bytes = b'{"n":1}',
    memo: bytes = b'{"data":"done"}',
) -> list[tuple[str, str]]:
    unit = _seed_unit(
        runs, now=engine.clock.now_ms(), output=output, event_data=event_data, memo=memo
    )
    made: list[tuple[str, str]] = await engine._store.transact(unit)
    return made


# -- the query text ---------------------------------------------------------------------


async def test_query_text_over_64_kib_is_refused_before_parsing(api: Api) -> None:
    padding = "# " + "x" * (64 * 1024) + "\n"
    answer = await api.post(padding + "{ apps { name } }")
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert "65536" in error["message"]
    assert "bytes" in error["message"]
    # Bytes count, not characters: 33,000 two-byte characters are over the limit.
    wide = await api.post("# " + "é" * 33_000 + "\n{ apps { name } }")
    assert wide.status_code == 400
    assert "65536" in wide.json()["errors"][0]["message"]
    # Just under the limit is fine.
    fits = "# " + "x" * (60 * 1024) + "\n{ apps { name } }"
    assert (await api.data(fits)) == {"apps": [{"name": "limits-app"}]}


async def test_too_many_tokens(api: Api) -> None:
    message = await api.error("{ " + "a " * 6000 + "}")
    assert "tokens" in message
    assert "5000" in message


async def test_nesting_too_deep_for_the_parser(api: Api) -> None:
    braces = await api.error("{ apps " + "{ name " * 40 + "}" * 41)
    assert "nests more than 32" in braces
    lists = await api.error(
        "{ runs(filter: {functionIDs: " + "[" * 40 + '"a"' + "]" * 40 + "}) { edges { cursor } } }"
    )
    assert "nests more than 32" in lists
    # A chain of fragments, each spreading the next, nests too...
    chain = "".join(f"fragment F{i} on App {{ ...F{i + 1} }} " for i in range(40))
    spreads = await api.error("{ apps { ...F0 } } " + chain + "fragment F40 on App { name }")
    assert "nests more than 32" in spreads
    # ... also when it is spread deep after being measured where it nested less.
    chain = "".join(f"fragment F{i} on App {{ ...F{i + 1} }} " for i in range(20))
    deep = "{ a { ...F0 } b " + "{ c " * 15 + "{ ...F0 }" + " }" * 15 + " } "
    assert "nests more than 32" in await api.error(deep + chain + "fragment F20 on App { name }")


# -- the parsed document ----------------------------------------------------------------


def _spans(levels: int) -> str:
    """``trace { childrenSpans { ... name } }`` with ``levels`` fields in all."""
    inner = "name"
    for _ in range(levels - 2):
        inner = f"childrenSpans {{ {inner} }}"
    return f"trace {{ {inner} }}"


async def test_depth_limit(api: Api) -> None:
    # runs > edges > node is 3 deep: 13 more make 16, the limit; one more is refused.
    ok = "{ runs { edges { node { " + _spans(13) + " } } } }"
    assert (await api.data(ok)) == {"runs": {"edges": []}}
    message = await api.error("{ runs { edges { node { " + _spans(14) + " } } } }")
    assert "depth" in message
    assert "17" in message
    assert "16" in message
    # Through fragments as well.
    via_fragments = (
        "{ runs { ...Page } } fragment Page on RunsV2Connection { edges { node { ...Run } } } "
        "fragment Run on FunctionRunV2 { " + _spans(14) + " }"
    )
    assert "depth" in await api.error(via_fragments)


async def test_alias_limit(api: Api) -> None:
    thirty = " ".join(f"a{i}: apps {{ name }}" for i in range(30))
    assert len(await api.data("{ " + thirty + " }")) == 30
    message = await api.error("{ " + thirty + " a30: apps { name } }")
    assert "aliases" in message
    assert "31" in message
    assert "30" in message


async def test_field_limit(api: Api) -> None:
    assert (await api.data("{ apps { " + "name " * 499 + "} }")) == {
        "apps": [{"name": "limits-app"}]
    }
    message = await api.error("{ apps { " + "name " * 500 + "} }")
    assert "fields" in message
    assert "501" in message
    assert "500" in message


async def test_fragments_count_every_time_they_are_spread(api: Api) -> None:
    """Twenty fragments, each spreading the one below twice, select two million fields:
    refused at once, the count not expanded one by one."""
    bomb = "fragment F0 on App { name url } " + "".join(
        f"fragment F{i} on App {{ ...F{i - 1} ...F{i - 1} }} " for i in range(1, 21)
    )
    started = time.monotonic()
    message = await api.error("{ apps { ...F20 } } " + bomb)
    assert time.monotonic() - started < 1.0
    assert "fields" in message
    assert "500" in message


async def test_limits_are_checked_before_anything_is_read(api: Api) -> None:
    await seed(api.engine, [("limits-app-work", 1)] * 3)
    statements = api.statements()
    aliases = " ".join(f"r{i}: runs {{ edges {{ node {{ id }} }} }}" for i in range(31))
    assert "aliases" in await api.error("{ " + aliases + " }")
    assert statements == []


async def test_standard_introspection_query_is_within_the_limits(api: Api) -> None:
    from graphql import get_introspection_query

    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    data = await api.data(query)
    assert data["__schema"]["queryType"]["name"] == "Query"


# -- list arguments ---------------------------------------------------------------------


async def test_page_sizes_are_capped(api: Api) -> None:
    assert (await api.data("{ runs(first: 200) { edges { cursor } } }")) == {"runs": {"edges": []}}
    for first in (201, 0, -1):
        message = await api.error(f"{{ runs(first: {first}) {{ edges {{ cursor }} }} }}")
        assert "first" in message
        assert "200" in message
    assert (await api.data("{ events(query: {limit: 200}) { id } }")) == {"events": []}
    for limit in (201, 0):
        message = await api.error(f"{{ events(query: {{limit: {limit}}}) {{ id }} }}")
        assert "limit" in message
        assert "200" in message


async def test_list_arguments_are_capped(api: Api) -> None:
    query = "query($ids: [String!]) { runs(filter: {functionIDs: $ids}) { edges { cursor } } }"
    assert (await api.data(query, ids=[f"fn-{i}" for i in range(100)]))["runs"]["edges"] == []
    message = await api.error(query, ids=[f"fn-{i}" for i in range(101)])
    assert "functionIDs" in message
    assert "100" in message
    statuses = "query($s: [FunctionRunStatus!]) { runs(filter: {status: $s}) { edges { cursor } } }"
    assert "status" in await api.error(statuses, s=["COMPLETED"] * 101)
    order = "query($o: [RunsV2OrderBy!]) { runs(orderBy: $o) { edges { cursor } } }"
    assert "orderBy" in await api.error(order, o=[{"field": "QUEUED_AT", "direction": "ASC"}] * 101)


# -- one read per list, not one per item -------------------------------------------------


async def test_a_function_filter_is_one_query(api: Api) -> None:
    ids = [f"limits-app-fn-{i}" for i in range(100)]
    runs = [(ids[i % 3], 1) for i in range(12)] + [("other", 1)] * 3
    made = await seed(api.engine, runs)
    statements = api.statements()
    query = (
        "query($ids: [String!]) { runs(first: 50, filter: {functionIDs: $ids}) "
        "{ edges { node { id functionID } } pageInfo { hasNextPage } } }"
    )
    page = (await api.data(query, ids=ids))["runs"]
    assert len(statements) == 1, statements
    assert " IN " in statements[0]
    wanted = [run_id for (_, run_id), (fn, _) in zip(made, runs, strict=True) if fn in ids]
    assert [edge["node"]["id"] for edge in page["edges"]] == sorted(wanted, reverse=True)
    assert page["pageInfo"]["hasNextPage"] is False


async def test_traces_of_a_page_of_runs_are_read_together(api: Api) -> None:
    await seed(api.engine, [("limits-app-work", 3)] * 50)
    query = (
        "query($n: Int!) { runs(first: $n) { edges { node { id app { name } function { name } "
        "trace { name childrenSpans { name outputID } } } } } }"
    )
    counts = []
    for size in (5, 50):
        statements = api.statements()
        page = (await api.data(query, n=size))["runs"]["edges"]
        assert len(page) == size
        assert all(len(e["node"]["trace"]["childrenSpans"]) == 3 for e in page)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


async def test_runs_of_a_page_of_events_are_read_together(api: Api) -> None:
    await seed(api.engine, [("limits-app-work", 0)] * 30)
    query = "query($n: Int!) { events(query: {limit: $n}) { id totalRuns functionRuns { id } } }"
    counts = []
    for size in (3, 30):
        statements = api.statements()
        events = (await api.data(query, n=size))["events"]
        assert len(events) == size
        assert all(e["totalRuns"] == 1 and len(e["functionRuns"]) == 1 for e in events)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


# -- stored data the encoder cannot handle ------------------------------------------------


async def test_deeply_nested_stored_data_is_answered_degraded(api: Api) -> None:
    # 300 levels: decodable, but deeper than orjson encodes (254); 1100: not even decodable.
    [(event_id, run_id)] = await seed(
        api.engine,
        [("limits-app-work", 1)],
        output=deep(300),
        event_data=deep(300),
        memo=b'{"data":' + deep(300) + b"}",
    )
    [(bad_event, bad_run)] = await seed(
        api.engine, [("limits-app-work", 0)], output=deep(1100), event_data=deep(1100)
    )
    events = (await api.data("{ events { id name payload raw } }"))["events"]
    assert {e["id"] for e in events} == {event_id, bad_event}
    for found in events:
        # The payload is the data as stored, whatever its depth.
        stored = deep(300) if found["id"] == event_id else deep(1100)
        assert found["payload"] == stored.decode()
        assert found["raw"].startswith('{"id":')
        assert '"name":"limits/seeded"' in found["raw"]
    one = await api.data(
        "query($id: ID!) { event(query: {eventId: $id}) { payload raw functionRuns { output } } }",
        id=event_id,
    )
    assert "degraded" in one["event"]["functionRuns"][0]["output"]
    for rid in (run_id, bad_run):
        run = await api.data(
            "query($id: String!) { run(runID: $id) { output trace { childrenSpans "
            "{ outputID } } } runTrigger(runID: $id) { payloads } }",
            id=rid,
        )
        output = run["run"]["output"]
        json.loads(output)  # still JSON
        assert "degraded" in output
        [payload] = run["runTrigger"]["payloads"]
        assert '"name":"limits/seeded"' in payload
    [span] = (
        await api.data(
            "query($id: String!) { run(runID: $id) { trace { childrenSpans { outputID } } } }",
            id=run_id,
        )
    )["run"]["trace"]["childrenSpans"]
    step = await api.data(
        "query($o: String!) { runTraceSpanOutputByID(outputID: $o) { data } }",
        o=span["outputID"],
    )
    assert "degraded" in step["runTraceSpanOutputByID"]["data"]
    listed = await api.data("{ runs { edges { node { id output } } } }")
    assert {e["node"]["id"] for e in listed["runs"]["edges"]} == {run_id, bad_run}


async def test_full_collections_resume_when_queries_end(api: Api) -> None:
    """Queries hold CPython's full collections back while they run (they would stop the
    server's loop for as long as they take); the usual thresholds come back after."""
    before = gc.get_threshold()
    await seed(api.engine, [("limits-app-work", 2)] * 5)
    query = "{ runs { edges { node { trace { name } } } } }"
    await asyncio.gather(*(api.data(query) for _ in range(6)))
    assert "nests" in await api.error("{ apps " + "{ name " * 40 + "}" * 41)
    assert gc.get_threshold() == before


# -- /health while the worst allowed query runs --------------------------------------------

#: Seeded for the load test: 2,000 finished runs of 5 functions, 4 steps each.
LOAD_RUNS = 2000
LOAD_FUNCTIONS = [f"limits-app-load-{i}" for i in range(5)]


def worst_query() -> str:
    """As costly as the limits allow: 30 aliases (the alias limit), each a full page of 200
    runs (the page limit) filtered on 100 function ids (the list limit), each run with its
    trace down to the depth limit (16), and 20 of them with the runs' outputs too: 500
    fields, the field limit."""
    pages = []
    for i in range(30):
        output = "output " if i < 20 else ""
        pages.append(
            f"r{i}: runs(first: 200, filter: {{functionIDs: $ids}}) "
            f"{{ edges {{ node {{ {output}{_spans(13)} }} }} }}"
        )
    return "query($ids: [String!]) { " + " ".join(pages) + " }"


#: The worst query's filter: the seeded functions and 95 others, 100 ids.
WORST_IDS = LOAD_FUNCTIONS + [f"limits-app-none-{i}" for i in range(95)]


@pytest.fixture
def loaded_server(tmp_path: pathlib.Path) -> Iterator[str]:
    database = tmp_path / "load.db"

    async def fill() -> None:
        async with Engine(client, functions, database=database, durability="normal") as engine:
            for start in range(0, LOAD_RUNS, 500):
                batch = [
                    (LOAD_FUNCTIONS[i % len(LOAD_FUNCTIONS)], 4) for i in range(start, start + 500)
                ]
                await seed(engine, batch, output=orjson.dumps({"total": 12, "items": [1, 2]}))

    asyncio.run(fill())
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mainspring.cli",
            "dev",
            "tests.integration.test_graphql_limits:functions",
            "--db",
            str(database),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        yield url
    finally:
        stop(proc)


@pytest.mark.slow
async def test_health_answers_while_the_worst_allowed_query_runs(loaded_server: str) -> None:
    """/health is polled every 10 ms while the worst query runs. Each answer must come
    within 250 ms and half of them within 100 ms: the goal is 100 ms, and the rest is
    slack for a loaded 2-core CI machine, where the test process, the server's loop and
    the GraphQL thread share two cores."""
    query = worst_query()
    async with httpx.AsyncClient(base_url=loaded_server, timeout=120) as http:
        checked = await http.post(
            "/v0/gql", json={"query": "{ runs(first: 1) { edges { cursor } } }"}
        )
        assert checked.status_code == 200, checked.text
        latencies: list[float] = []
        started = time.monotonic()
        heavy = asyncio.ensure_future(
            http.post("/v0/gql", json={"query": query, "variables": {"ids": WORST_IDS}})
        )
        async with httpx.AsyncClient(base_url=loaded_server, timeout=10) as probe:
            while not heavy.done():
                sent = time.monotonic()
                answer = await probe.get("/health")
                latencies.append(time.monotonic() - sent)
                assert answer.status_code == 200
                await asyncio.sleep(0.01)
        answer = await heavy
        took = time.monotonic() - started
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert "errors" not in body, body["errors"][:3]
    pages = body["data"]
    assert len(pages) == 30
    assert all(len(page["edges"]) == 200 for page in pages.values())
    median, worst = statistics.median(latencies), max(latencies)
    print(
        f"\nworst allowed query: {took:.2f} s, {len(answer.content) / 1e6:.1f} MB; /health: "
        f"{len(latencies)} polls, median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms"
    )
    assert len(latencies) >= 3
    assert median < 0.1, latencies
    assert worst < 0.25, latencies
