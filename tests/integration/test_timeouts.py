"""Timeouts(start=, finish=) cancel runs that do not start or finish in time."""

from __future__ import annotations

import asyncio

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_job

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def test_a_run_that_cannot_start_in_time_is_cancelled(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="timeouts")
    clock = inngest.ManualClock()
    gate = asyncio.Event()

    @client.create_function(fn_id="hog", trigger=inngest.TriggerEvent(event="hog"))
    async def hog(ctx: inngest.Context) -> None:
        await ctx.step.run("hold", gate.wait)

    @client.create_function(
        fn_id="quick",
        trigger=inngest.TriggerEvent(event="quick"),
        timeouts=inngest.Timeouts(start=10_000),
    )
    async def quick(ctx: inngest.Context) -> str:
        return "ran"

    # One call at a time: "quick" waits behind "hog" for longer than its start timeout.
    async with make_engine(client, [hog, quick], clock=clock, concurrency=1) as engine:
        await engine.send(inngest.Event(name="hog"))
        await asyncio.sleep(0.05)
        [event_id] = await engine.send(inngest.Event(name="quick"))
        [run] = await engine.runs(event_id)
        clock.advance(11)
        gate.set()
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Cancelled"
    assert done.error is not None
    assert done.error["message"] == "the run did not start within 10s"


async def test_a_run_that_does_not_finish_in_time_is_cancelled(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="timeouts")
    clock = inngest.ManualClock()
    after: list[str] = []

    @client.create_function(
        fn_id="slow",
        trigger=inngest.TriggerEvent(event="slow"),
        timeouts=inngest.Timeouts(finish=60_000),
    )
    async def slow(ctx: inngest.Context) -> None:
        await ctx.step.sleep("nap", 3_600_000)
        await ctx.step.run("after", lambda: after.append("ran"))

    async with make_engine(client, [slow], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="slow"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        clock.advance(61)
        done = await engine.wait(run.id, timeout=5)
        clock.advance(3600)
        await asyncio.sleep(0.1)
    assert done.status == "Cancelled"
    assert done.error is not None
    assert done.error["message"] == "the run did not finish within 1m"
    assert after == []


def test_timeouts_that_do_not_parse_fail_at_definition() -> None:
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"Timeouts\.finish"):
        inngest.Timeouts(finish="forever")
