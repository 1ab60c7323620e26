"""Cancelling runs: by a matching event, by API, in bulk (protocol §8.6)."""

from __future__ import annotations

import asyncio
import datetime

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, until_idle, wait_for_pauses
from tests.integration.test_parallel import Recorder

pytestmark = pytest.mark.backends("sqlite", "postgres")


def build(client: inngest.Client, rec: Recorder, gate: asyncio.Event) -> inngest.Function[str]:
    async def step(name: str) -> str:
        rec.hit(name)
        if name == "first":
            await gate.wait()
            # Past the call's chain budget (20 ms): over HTTP a call in flight cannot be
            # stopped, but it starts no step once its budget is spent.
            await asyncio.sleep(0.03)
        return name

    @client.create_function(
        fn_id="order",
        trigger=inngest.TriggerEvent(event="order/placed"),
        cancel=[inngest.Cancel(event="order/cancelled", if_exp="event.data.id == async.data.id")],
    )
    async def order(ctx: inngest.Context) -> str:
        await ctx.step.run("first", step, "first")
        await ctx.step.run("second", step, "second")
        return await ctx.step.run("third", step, "third")

    return order


async def start(engine: inngest.Engine, rec: Recorder, order_id: str) -> str:
    [event_id] = await engine.send(inngest.Event(name="order/placed", data={"id": order_id}))
    [run] = await engine.runs(event_id)
    for _ in range(300):
        if "first" in rec.calls:
            return run.id
        await asyncio.sleep(0.01)
    raise AssertionError("the run never started its first step")


async def test_a_matching_event_cancels_the_run(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="cancel")
    rec, gate = Recorder(), asyncio.Event()
    async with make_engine(client, [build(client, rec, gate)]) as engine:
        run_id = await start(engine, rec, "o-1")
        await wait_for_pauses(engine, run_id)  # the cancel condition is armed
        await engine.send(inngest.Event(name="order/cancelled", data={"id": "o-1"}))
        cancelled = await engine.wait(run_id, timeout=5)
        gate.set()  # the in-flight step finishes; its result must be discarded
        await asyncio.sleep(0.2)
        after = await engine.run(run_id)
    assert cancelled.status == "Cancelled"
    assert after.status == "Cancelled"
    assert rec.calls == ["first"]


async def test_a_non_matching_event_does_not_cancel(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="cancel")
    rec, gate = Recorder(), asyncio.Event()
    async with make_engine(client, [build(client, rec, gate)]) as engine:
        run_id = await start(engine, rec, "o-2")
        await engine.send(
            [
                inngest.Event(name="order/cancelled", data={"id": "o-other"}),
                inngest.Event(name="order/shipped", data={"id": "o-2"}),
            ]
        )
        gate.set()
        done = await engine.wait(run_id, timeout=5)
    assert done.status == "Completed", done.error
    assert rec.calls == ["first", "second", "third"]


async def test_cancel_by_api(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="cancel")
    rec, gate = Recorder(), asyncio.Event()
    async with make_engine(client, [build(client, rec, gate)]) as engine:
        run_id = await start(engine, rec, "o-3")
        assert await engine.cancel(run_id) is True
        assert await engine.cancel(run_id) is False  # already finished
        gate.set()
        await asyncio.sleep(0.2)
        run = await engine.run(run_id)
        with pytest.raises(inngest.RunNotFoundError):
            await engine.cancel("no-such-run")
    assert run.status == "Cancelled"
    assert rec.calls == ["first"]


async def test_bulk_cancel_by_function_and_time_range(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="cancel")
    rec, gate = Recorder(), asyncio.Event()
    fn = build(client, rec, gate)
    async with make_engine(client, [fn]) as engine:
        ids = await engine.send(
            [inngest.Event(name="order/placed", data={"id": f"o-{n}"}) for n in range(5)]
        )
        run_ids = [run.id for event_id in ids for run in await engine.runs(event_id)]
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        assert await engine.cancel_runs(fn, started_before=earlier) == []
        cancelled = await engine.cancel_runs(fn, started_after=earlier, started_before=later)
        gate.set()
        statuses = [(await engine.run(run_id)).status for run_id in run_ids]
    assert sorted(cancelled) == sorted(run_ids)
    assert statuses == ["Cancelled"] * 5
    assert "second" not in rec.calls


async def test_function_cancelled_event_reaches_listeners(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="cancel")
    rec, gate = Recorder(), asyncio.Event()
    seen: list[str] = []

    @client.create_function(
        fn_id="audit", trigger=inngest.TriggerEvent(event="inngest/function.cancelled")
    )
    async def audit(ctx: inngest.Context) -> None:
        seen.append(ctx.event.data["run_id"])

    async with make_engine(client, [build(client, rec, gate), audit]) as engine:
        run_id = await start(engine, rec, "o-9")
        await engine.cancel(run_id)
        gate.set()
        await until_idle(engine)  # the listener ran, and nothing runs it again
    assert seen == [run_id]


def test_bad_cancel_conditions_fail_at_definition() -> None:
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"async\.data\.id =="):
        inngest.Cancel(event="x", if_exp="async.data.id ==")
    with pytest.raises(inngest.FunctionConfigInvalidError, match="invalid duration"):
        inngest.Cancel(event="x", timeout="soon")
