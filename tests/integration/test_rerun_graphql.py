"""Reruns as the APIs show them: ``rerunOf`` on GraphQL runs (``rerun_of`` over REST), the
trace spans of reused steps (their own times, the run that executed them), and how the
dashboard's timeline lays those out; on both transports."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

import mainspring as inngest
from mainspring.engine.records import Run, RunStatus, StepAttempt
from mainspring.server.app import create_app
from mainspring.server.dashboard.timeline import layout
from mainspring.server.graphql.trace import build_trace
from tests.conftest import EngineFactory, run_to_end


class Api:
    def __init__(self, engine: inngest.Engine, http: httpx.AsyncClient) -> None:
        self.engine = engine
        self.http = http
        self.failing = True

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = await self.http.post("/v0/gql", json={"query": query, "variables": variables})
        body = answer.json()
        assert answer.status_code == 200, body
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@asynccontextmanager
async def api(make_engine: EngineFactory) -> AsyncIterator[Api]:
    """An order whose ``pack`` step takes some 30 ms, then ``charge`` fails while
    ``Api.failing`` is set, then ``ship``."""
    client = inngest.Client(app_id="rr")
    state: list[Api] = []

    async def pack() -> str:
        await asyncio.sleep(0.03)
        return "packed"

    def charge() -> str:
        if state[0].failing:
            raise inngest.NonRetriableError("card declined")
        return "charged"

    @client.create_function(
        fn_id="order", trigger=inngest.TriggerEvent(event="rr/order"), retries=0
    )
    async def order(ctx: inngest.Context) -> list[str]:
        return [
            await ctx.step.run("pack", pack),
            await ctx.step.run("charge", charge),
            await ctx.step.run("ship", lambda: "shipped"),
        ]

    async with make_engine(client, [order]) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            state.append(Api(engine, http))
            yield state[0]


_RERUN_OF = "rerunOf { runID fromStep copiedSteps createdAt run { id status } }"


async def test_a_rerun_links_to_its_original(make_engine: EngineFactory) -> None:
    async with api(make_engine) as a:
        original = await run_to_end(a.engine, inngest.Event(name="rr/order"))
        a.failing = False
        plain = await a.engine.wait(await a.engine.rerun(original.id), timeout=10)
        from_step = await a.engine.wait(
            await a.engine.rerun(original.id, from_step="charge"), timeout=10
        )
        one = await a.data(
            f"query($id: String!) {{ run(runID: $id) {{ id {_RERUN_OF} }} }}", id=from_step.id
        )
        # A page of runs reads every origin at once; runs that are no rerun have none.
        page = await a.data(f"{{ runs(first: 10) {{ edges {{ node {{ id {_RERUN_OF} }} }} }} }}")
        older = await a.data(
            "query($q: EventQuery!) { event(query: $q) { functionRuns { id rerunOf { runID } } } }",
            q={"eventId": original.event_id},
        )
        rest = (await a.http.get(f"/v1/runs/{from_step.id}")).json()["data"]["rerun_of"]
    expected = {
        "runID": original.id,
        "fromStep": "charge",
        "copiedSteps": 1,
        "run": {"id": original.id, "status": "FAILED"},
    }
    assert {k: v for k, v in one["run"]["rerunOf"].items() if k != "createdAt"} == expected
    created = datetime.datetime.fromisoformat(one["run"]["rerunOf"]["createdAt"])
    assert created.timestamp() * 1000 >= original.ended_at - 1  # type: ignore[operator]
    origins = {edge["node"]["id"]: edge["node"]["rerunOf"] for edge in page["runs"]["edges"]}
    assert origins[original.id] is None
    assert origins[plain.id] is not None
    assert (origins[plain.id]["fromStep"], origins[plain.id]["copiedSteps"]) == (None, 0)
    assert origins[from_step.id]["runID"] == original.id
    linked = {run["id"]: run["rerunOf"] for run in older["event"]["functionRuns"]}
    assert linked == {
        original.id: None,
        plain.id: {"runID": original.id},
        from_step.id: {"runID": original.id},
    }
    assert (rest["run_id"], rest["from_step"], rest["copied_steps"]) == (original.id, "charge", 1)


_SPANS = "trace { startedAt childrenSpans { name startedAt endedAt duration copiedFromRunID } }"


async def test_reused_steps_keep_their_times_in_the_trace(make_engine: EngineFactory) -> None:
    async with api(make_engine) as a:
        original = await run_to_end(a.engine, inngest.Event(name="rr/order"))
        a.failing = False
        rerun = await a.engine.wait(
            await a.engine.rerun(original.id, from_step="charge"), timeout=10
        )
        query = f"query($a: String!, $b: String!) {{ a: run(runID: $a) {{ {_SPANS} }} "
        query += f"b: run(runID: $b) {{ {_SPANS} }} }}"
        data = await a.data(query, a=original.id, b=rerun.id)
        page = (await a.http.get(f"/runs/{rerun.id}")).text
    before = {span["name"]: span for span in data["a"]["trace"]["childrenSpans"]}
    after = {span["name"]: span for span in data["b"]["trace"]["childrenSpans"]}
    pack = after["pack"]
    assert pack["copiedFromRunID"] == original.id
    assert (pack["startedAt"], pack["endedAt"]) == (
        before["pack"]["startedAt"],
        before["pack"]["endedAt"],
    )
    assert pack["duration"] == before["pack"]["duration"] >= 20
    assert after["charge"]["copiedFromRunID"] is None
    assert after["ship"]["copiedFromRunID"] is None
    # The rerun's own start is its own: after the reused step ended, in the original.
    assert data["b"]["trace"]["startedAt"] >= pack["endedAt"]
    # The run page labels the reused step (its bar and its entry) with where it ran.
    assert page.count(f"reused from run {original.id}") == 1
    assert f'reused from run <a class="mono" href="/runs/{original.id}">' in page


def _entry(name: str, start: int, end: int, copied: str | None = None) -> StepAttempt:
    return StepAttempt(name, name, "StepRun", 0, start, end, name, None, None, copied)


def test_the_timeline_draws_reused_steps_as_they_ran_ending_where_the_run_starts() -> None:
    run = Run(
        id="R2",
        function_id="f",
        event_id="e",
        status=RunStatus.COMPLETED,
        output=None,
        error=None,
        created_at=50_000,
        started_at=50_000,
        ended_at=50_300,
    )
    history = [
        # Ran in R1 (two parallel branches, then a step), long before this run started.
        _entry("a", 1_000, 1_400, "R1"),
        _entry("b", 1_000, 1_200, "R1"),
        _entry("c", 1_500, 1_600, "R1"),
        _entry("d", 50_100, 50_300),
    ]
    timeline = layout(build_trace(run, "f", history), now=60_000)
    bars = {bar.span.name: bar for lane in timeline.lanes for bar in lane}
    # The reused block (600 ms) ends where the run starts; durations and gaps kept.
    assert [(bars[n].start, bars[n].end) for n in "abc"] == [
        (49_400, 49_800),
        (49_400, 49_600),
        (49_900, 50_000),
    ]
    assert (bars["d"].start, bars["d"].end) == (50_100, 50_300)
    assert (timeline.start, timeline.end) == (49_400, 50_300)
    assert [bars[n].span.copied_from for n in "abcd"] == ["R1", "R1", "R1", None]
    assert len(timeline.lanes) == 2  # a and b ran side by side; c and d after them
