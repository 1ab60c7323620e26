"""``GET /v1/runs`` (filters, cursor paging, CEL ``q``), ``POST /v1/runs/{id}/rerun``,
``POST /v1/cancellations``, ``GET /v1/functions``, ``GET /v1/apps`` and the GraphQL
``rerun`` / ``cancelRun`` mutations, on both transports."""

from __future__ import annotations

import collections
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import mainspring as inngest
from mainspring.engine import run_search
from mainspring.engine.clock import ManualClock
from mainspring.protocol.expressions import compile_expression
from mainspring.server.app import create_app
from tests.conftest import EngineFactory, wait_for_pauses

T0 = 1_700_000_000_000


class World:
    def __init__(self, engine: inngest.Engine, http: httpx.AsyncClient, clock: ManualClock):
        self.engine = engine
        self.http = http
        self.clock = clock
        #: Run ids by the user of their event, in the order they were created.
        self.runs: dict[str, str] = {}
        self.executed: collections.Counter[str] = collections.Counter()

    async def send(self, name: str, user: str) -> str:
        [event_id] = await self.engine.send(inngest.Event(name=name, data={"user": user}))
        [run] = await self.engine.runs(event_id)
        self.runs[user] = run.id
        self.clock.advance(1)
        return run.id

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params)

    async def page_ids(self, **params: Any) -> tuple[list[str], str | None]:
        answer = await self.get("/v1/runs", **params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return [run["run_id"] for run in body["data"]], body["cursor"]


def functions(client: inngest.Client, executed: collections.Counter[str]) -> list[Any]:
    def note(name: str) -> str:
        executed[name] += 1
        return name

    @client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="t/greet"))
    async def greet(ctx: inngest.Context) -> str:
        await ctx.step.run("hello", note, "hello")
        return str(ctx.event.data["user"])

    @client.create_function(fn_id="fail", trigger=inngest.TriggerEvent(event="t/fail"), retries=0)
    async def fail(ctx: inngest.Context) -> None:
        await ctx.step.run("first", note, "first")
        raise inngest.NonRetriableError("nope")

    @client.create_function(fn_id="wait", trigger=inngest.TriggerEvent(event="t/wait"))
    async def wait(ctx: inngest.Context) -> None:
        await ctx.step.wait_for_event("hold", event="t/never", timeout=3_600_000)

    return [greet, fail, wait]


@asynccontextmanager
async def world(make_engine: EngineFactory) -> AsyncIterator[World]:
    """Runs: greet a..e (Completed), fail f1, f2 (Failed), wait w1..w3 (Running), one
    second apart from T0 in that order."""
    client = inngest.Client(app_id="api")
    clock = ManualClock(T0)
    executed: collections.Counter[str] = collections.Counter()
    async with make_engine(client, functions(client, executed), clock=clock) as engine:
        app = create_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            w = World(engine, http, clock)
            w.executed = executed
            for user in "abcde":
                await w.send("t/greet", user)
            for user in ("f1", "f2"):
                await w.send("t/fail", user)
            for user in ("w1", "w2", "w3"):
                await w.send("t/wait", user)
            for user in [*"abcde", "f1", "f2"]:
                await engine.wait(w.runs[user], timeout=10)
            for user in ("w1", "w2", "w3"):
                # Recorded with the pause, in the unit of the first call's answer: until then
                # only engine.run shows the run as running (its call is out), not the listings.
                await wait_for_pauses(engine, w.runs[user])
            yield w


async def test_paging_through_every_run_newest_first(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        everything, cursor = await w.page_ids()
        assert cursor is None
        assert everything == sorted(w.runs.values(), reverse=True)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            ids, cursor = await w.page_ids(**params)
            seen.extend(ids)
            pages += 1
            if cursor is None:
                break
            assert len(ids) == 3
        assert seen == everything
        assert pages == 4  # 3 + 3 + 3 + 1
        first = (await w.get("/v1/runs", limit=1)).json()["data"][0]
        assert first["status"] == "Running"
        assert first["function_id"] == "api-wait"


async def test_filters_by_function_status_and_time(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        r = w.runs
        ids, _ = await w.page_ids(function_id=["api-greet", "api-fail"])
        assert set(ids) == {r[u] for u in ["a", "b", "c", "d", "e", "f1", "f2"]}
        ids, _ = await w.page_ids(status="Failed")
        assert ids == [r["f2"], r["f1"]]
        # Any case: the GraphQL enum's names and lower case are taken too.
        ids, _ = await w.page_ids(status=["COMPLETED", "running"], function_id="api-wait")
        assert ids == [r["w3"], r["w2"], r["w1"]]
        # [from, until): c was created at T0 + 2 s, e at T0 + 4 s.
        ids, _ = await w.page_ids(**{"from": T0 + 2000, "until": T0 + 4000})
        assert ids == [r["d"], r["c"]]
        moment = datetime.datetime.fromtimestamp((T0 + 2000) / 1000, datetime.UTC)
        ids, _ = await w.page_ids(**{"from": moment.isoformat(), "function_id": "api-greet"})
        assert ids == [r["e"], r["d"], r["c"]]
        ids, _ = await w.page_ids(until=moment.isoformat().replace("+00:00", "Z"))
        assert ids == [r["b"], r["a"]]


async def test_a_cel_expression_on_the_event(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        r = w.runs
        ids, cursor = await w.page_ids(q='event.data.user == "c"')
        assert (ids, cursor) == ([r["c"]], None)
        ids, _ = await w.page_ids(q='event.data.user.startsWith("w")', status="Running")
        assert ids == [r["w3"], r["w2"], r["w1"]]
        # Paged: one match per page, each page's cursor leads to the next.
        query = 'event.data.user in ["a", "d"]'
        ids, cursor = await w.page_ids(q=query, limit=1)
        assert ids == [r["d"]]
        assert cursor is not None
        ids, cursor = await w.page_ids(q=query, limit=1, cursor=cursor)
        assert ids == [r["a"]]
        ids, cursor = await w.page_ids(q=query, limit=1, cursor=cursor)
        assert (ids, cursor) == ([], None)
        # A missing field matches nothing rather than failing.
        assert (await w.page_ids(q="event.data.nothing == 1")) == ([], None)


async def test_a_search_reads_a_bounded_number_of_runs(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        store = w.engine._store
        expression = compile_expression('event.data.user == "a"')
        page = await run_search.search(store, expression=expression, limit=5, scan_limit=4)
        # Four runs read (w3, w2, w1, f2), none matched: go on from the last one read.
        assert (page.runs, page.cursor) == ([], w.runs["f2"])
        page = await run_search.search(
            store, expression=expression, limit=5, scan_limit=100, cursor=page.cursor
        )
        assert [run.id for run in page.runs] == [w.runs["a"]]
        assert page.cursor is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"cursor": "not-a-ulid"}, "cursor"),
        ({"status": "Done"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"q": "event.data.("}, "q"),
        ({"q": " "}, "q"),
        ({"function_id": ""}, "function_id"),
    ],
)
async def test_bad_parameters_are_400s_naming_them(
    make_engine: EngineFactory, params: dict[str, str], named: str
) -> None:
    client = inngest.Client(app_id="api")
    async with make_engine(client, functions(client, collections.Counter())) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            answer = await http.get("/v1/runs", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{named}:"), answer.json()


async def test_cancellations(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        r = w.runs
        cancel = {"function_id": "api-wait", "if": 'event.data.user == "w2"'}
        answer = await w.http.post("/v1/cancellations", json=cancel)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": {"cancelled": [r["w2"]]}}
        assert (await w.engine.run(r["w2"])).status == "Cancelled"
        # A window: w3 was created at T0 + 9 s.
        answer = await w.http.post(
            "/v1/cancellations",
            json={"function_id": "api-wait", "started_after": T0 + 8500},
        )
        assert answer.json() == {"data": {"cancelled": [r["w3"]]}}
        # The reference's form: the app and the function's slug within it.
        answer = await w.http.post(
            "/v1/cancellations",
            json={
                "app_id": "api",
                "function_id": "wait",
                "started_before": "2100-01-01T00:00:00Z",
            },
        )
        assert answer.json() == {"data": {"cancelled": [r["w1"]]}}
        statuses = {(await w.engine.run(r[u])).status for u in ("w1", "w2", "w3")}
        assert statuses == {"Cancelled"}
        assert (await w.engine.run(r["a"])).status == "Completed"
        for body, status, named in [
            ({"if": "true"}, 400, "function_id"),
            ({"function_id": "api-wait", "if": "event.("}, 400, "if"),
            ({"function_id": "api-wait", "started_after": "soon"}, 400, "started_after"),
            ({"function_id": "api-nothing"}, 404, "cancel_runs"),
        ]:
            answer = await w.http.post("/v1/cancellations", json=body)
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"].startswith(named), answer.json()
        answer = await w.http.post("/v1/cancellations", content=b"[1]")
        assert answer.status_code == 400


async def test_rerun_over_rest(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        failed = w.runs["f1"]
        assert w.executed["first"] == 2
        answer = await w.http.post(f"/v1/runs/{failed}/rerun", json={"from_step": "later"})
        assert answer.status_code == 400
        assert "never recorded that step" in answer.json()["error"]
        answer = await w.http.post("/v1/runs/01HZZZZZZZZZZZZZZZZZZZZZZZ/rerun")
        assert answer.status_code == 404
        assert "no run with id" in answer.json()["error"]
        answer = await w.http.post(f"/v1/runs/{failed}/rerun", json={"from_step": 3})
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("from_step:")
        # From the start, no body at all; then from a step.
        answer = await w.http.post(f"/v1/runs/{w.runs['a']}/rerun")
        assert answer.status_code == 200, answer.text
        again = answer.json()["data"]["run_id"]
        answer = await w.http.post(f"/v1/runs/{w.runs['a']}/rerun", json={"from_step": "hello"})
        from_step = answer.json()["data"]["run_id"]
        for run_id in (again, from_step):
            assert (await w.engine.wait(run_id, timeout=10)).output == "a"
        shown = (await w.get(f"/v1/runs/{from_step}")).json()["data"]
        assert shown["rerun_of"] == {
            "run_id": w.runs["a"],
            "from_step": "hello",
            "copied_steps": 0,
            "text": f"rerun of {w.runs['a']} from step hello",
        }
        assert (await w.get(f"/v1/runs/{w.runs['a']}")).json()["data"]["rerun_of"] is None
        listed, _ = await w.page_ids(limit=2)
        assert listed == [from_step, again]


async def test_functions_and_apps(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        functions = (await w.get("/v1/functions")).json()["data"]
        apps = (await w.get("/v1/apps")).json()["data"]
    by_id = {fn["id"]: fn for fn in functions}
    assert set(by_id) == {"api-greet", "api-fail", "api-wait"}
    assert by_id["api-fail"]["app"] == "api"
    assert by_id["api-fail"]["triggers"] == [{"event": "t/fail"}]
    assert by_id["api-fail"]["config"]["retries"] == 0
    assert by_id["api-greet"]["config"]["retries"] == 4
    [app] = apps
    assert app["name"] == "api"
    assert app["function_count"] == 3
    assert set(app) >= {"url", "sdk", "app_version", "function_ids"}


async def test_graphql_rerun_and_cancel_run(make_engine: EngineFactory) -> None:
    async with world(make_engine) as w:
        rerun = (
            "mutation Rerun($runID: ULID!, $fromStep: RerunFromStepInput) "
            "{ rerun(runID: $runID, fromStep: $fromStep) }"
        )
        variables = {"runID": w.runs["b"], "fromStep": {"stepID": "hello"}}
        answer = await w.http.post("/v0/gql", json={"query": rerun, "variables": variables})
        body = answer.json()
        assert "errors" not in body, body
        new_id = body["data"]["rerun"]
        assert (await w.engine.wait(new_id, timeout=10)).output == "b"
        variables = {"runID": w.runs["b"], "fromStep": {"stepID": "nope"}}
        body = (await w.http.post("/v0/gql", json={"query": rerun, "variables": variables})).json()
        assert "never recorded that step" in body["errors"][0]["message"]
        cancel = "mutation ($runID: ULID!) { cancelRun(runID: $runID) { id status } }"
        variables = {"runID": w.runs["w1"]}
        body = (await w.http.post("/v0/gql", json={"query": cancel, "variables": variables})).json()
        assert body["data"]["cancelRun"] == {"id": w.runs["w1"], "status": "CANCELLED"}
        # Over GET, queries only: no link can act on a run.
        answer = await w.http.get(
            "/v0/gql",
            params={"query": f'mutation {{ cancelRun(runID: "{w.runs["w2"]}") {{ id }} }}'},
        )
        assert answer.status_code == 400
        assert "mutation needs POST" in answer.json()["errors"][0]["message"]
        assert (await w.engine.run(w.runs["w2"])).status == "Running"
