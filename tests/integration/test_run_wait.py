"""``POST /v1/runs/wait``: the answer comes when the runs named (by their events or by id)
have finished, or when the timeout passes; each run once, in order; bad bodies are a 400
naming the field, an unknown run a 404."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import mainspring as inngest
from mainspring.server.app import create_app
from mainspring.server.run_wait import MAX_WAIT_IDS, MAX_WAIT_S
from tests.conftest import EngineFactory


def functions(client: inngest.Client) -> list[Any]:
    @client.create_function(fn_id="double", trigger=inngest.TriggerEvent(event="t/double"))
    async def double(ctx: inngest.Context) -> int:
        return int(await ctx.step.run("x2", lambda: 2 * ctx.event.data["n"]))

    @client.create_function(fn_id="held", trigger=inngest.TriggerEvent(event="t/held"))
    async def held(ctx: inngest.Context) -> str:
        await ctx.step.wait_for_event("go", event="t/go", timeout=3_600_000)
        return "released"

    return [double, held]


@asynccontextmanager
async def api(
    make_engine: EngineFactory,
) -> AsyncIterator[tuple[inngest.Engine, httpx.AsyncClient]]:
    client = inngest.Client(app_id="w")
    async with make_engine(client, functions(client)) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            yield engine, http


async def send(engine: inngest.Engine, name: str, data: dict[str, Any] | None = None) -> str:
    [event_id] = await engine.send(inngest.Event(name=name, data=data or {}))
    return event_id


async def test_answers_when_the_events_runs_have_finished(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (engine, http):
        events = [await send(engine, "t/double", {"n": n}) for n in range(5)]
        answer = await http.post("/v1/runs/wait", json={"event_ids": events, "timeout": 30})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["done"] is True
        assert [run["event_id"] for run in body["data"]] == events
        assert [run["output"] for run in body["data"]] == [0, 2, 4, 6, 8]
        assert {run["status"] for run in body["data"]} == {"Completed"}
        assert all(run["ended_at"] is not None for run in body["data"])


async def test_a_waiting_request_is_woken_by_the_runs_end(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (engine, http):
        held = await send(engine, "t/held")
        [run] = await engine.runs(held)
        asked = asyncio.create_task(
            http.post("/v1/runs/wait", json={"run_ids": [run.id], "timeout": MAX_WAIT_S})
        )
        await asyncio.sleep(0.2)
        assert not asked.done(), "answered before the run finished"
        await send(engine, "t/go")
        answer = await asyncio.wait_for(asked, 30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["done"] is True
        [settled] = answer.json()["data"]
        assert (settled["run_id"], settled["status"]) == (run.id, "Completed")
        assert settled["output"] == "released"


async def test_the_timeout_answers_with_the_runs_as_they_are(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (engine, http):
        held = await send(engine, "t/held")
        done = await send(engine, "t/double", {"n": 1})
        await engine.wait((await engine.runs(done))[0].id, timeout=30)
        answer = await http.post("/v1/runs/wait", json={"event_ids": [held, done], "timeout": 0.1})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["done"] is False
        statuses = {run["event_id"]: run["status"] for run in body["data"]}
        assert statuses[done] == "Completed"
        assert statuses[held] in {"Queued", "Running"}


async def test_each_run_once_events_first(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (engine, http):
        first = await send(engine, "t/double", {"n": 1})
        second = await send(engine, "t/double", {"n": 2})
        [run2] = await engine.runs(second)
        [run1] = await engine.runs(first)
        body = {"run_ids": [run2.id, run1.id], "event_ids": [first, first], "timeout": 30}
        answer = await http.post("/v1/runs/wait", json=body)
        assert answer.status_code == 200, answer.text
        assert [run["run_id"] for run in answer.json()["data"]] == [run1.id, run2.id]


async def test_an_event_that_started_nothing_has_no_runs(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (engine, http):
        nothing = await send(engine, "t/nobody-listens")
        answer = await http.post("/v1/runs/wait", json={"event_ids": [nothing, "nonesuch"]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": [], "done": True}


async def test_an_unknown_run_is_a_404(make_engine: EngineFactory) -> None:
    async with api(make_engine) as (_, http):
        answer = await http.post("/v1/runs/wait", json={"run_ids": ["01NOSUCHRUN"]})
        assert answer.status_code == 404, answer.text
        assert "01NOSUCHRUN" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "JSON object"),
        ({}, "event_ids, run_ids"),
        ({"event_ids": []}, "event_ids, run_ids"),
        ({"event_ids": "e1"}, "event_ids"),
        ({"run_ids": [1]}, "run_ids[0]"),
        ({"run_ids": ["r", ""]}, "run_ids[1]"),
        ({"event_ids": ["x" * 129]}, "event_ids[0]"),
        ({"event_ids": ["e"] * (MAX_WAIT_IDS + 1)}, "event_ids"),
        ({"event_ids": ["e"] * MAX_WAIT_IDS, "run_ids": ["r"]}, "together"),
        ({"event_ids": ["e"], "timeout": -1}, "timeout"),
        ({"event_ids": ["e"], "timeout": MAX_WAIT_S + 1}, "timeout"),
        ({"event_ids": ["e"], "timeout": True}, "timeout"),
        ({"event_ids": ["e"], "timeout": "5"}, "timeout"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(
    make_engine: EngineFactory, body: Any, named: str
) -> None:
    async with api(make_engine) as (_, http):
        answer = await http.post("/v1/runs/wait", json=body)
        assert answer.status_code == 400, answer.text
        assert named in answer.json()["error"], answer.text
