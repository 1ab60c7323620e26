"""A run's queued work (``Engine.jobs``, ``GET /v1/runs/{id}/jobs``) lists only what is
still to come: the job that ended a sleep, the timeout of a wait an event resolved and the
call that ran a step are gone from the store as soon as they are done, not when the run
ends (a restart would otherwise run them again, and a user would see phantom work)."""

from __future__ import annotations

import asyncio

import pytest

import mainspring as inngest
from tests.conftest import (
    EngineFactory,
    log_calls,
    wait_for_job,
    wait_for_pauses,
    wait_for_step,
)

pytestmark = pytest.mark.backends("sqlite", "postgres")

DAY_MS = 86_400_000


def function(client: inngest.Client, first: str) -> inngest.Function[object]:
    @client.create_function(fn_id=f"after-{first}", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        if first == "wait":
            got = await ctx.step.wait_for_event(
                "approval",
                event="approved",
                if_exp="event.data.id == async.data.id",
                timeout=3_600_000,
            )
            assert got is not None
        elif first == "sleep":
            await ctx.step.sleep("nap", 60_000)
        else:
            await ctx.step.run("work", lambda: 1)
        await ctx.step.sleep("long", DAY_MS)
        return "done"

    return fn


async def only_the_long_sleep(engine: inngest.Engine, run_id: str) -> None:
    for _ in range(300):
        jobs = await engine.jobs(run_id)
        if any(job.data and job.data.get("user_id") == "long" for job in jobs):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # anything left behind would still be there
    jobs = await engine.jobs(run_id)
    assert [(job.kind.value, (job.data or {}).get("user_id")) for job in jobs] == [
        ("sleep", "long")
    ], jobs


async def test_a_resolved_wait_leaves_no_timeout_job(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="live-jobs")
    async with make_engine(client, [function(client, "wait")]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go", data={"id": 7}))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
        await engine.send(inngest.Event(name="approved", data={"id": 7}))
        await only_the_long_sleep(engine, run.id)


async def test_an_ended_sleep_leaves_no_job(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="live-jobs")
    clock = inngest.ManualClock()
    async with make_engine(client, [function(client, "sleep")], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        clock.advance(61)
        await only_the_long_sleep(engine, run.id)


async def test_a_recorded_step_leaves_no_job(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="live-jobs")
    async with make_engine(client, [function(client, "step")]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await only_the_long_sleep(engine, run.id)


async def test_a_wait_mode_group_calls_once_after_a_sleep_and_a_step(
    make_engine: EngineFactory,
) -> None:
    """The group's sleep ends after its step: that one ending calls the function again
    (its step, recorded earlier, did not, the sleep being still pending)."""
    client = inngest.Client(app_id="live-jobs")

    @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        await ctx.group.parallel(
            (lambda: ctx.step.sleep("nap", 60_000), lambda: ctx.step.run("work", lambda: 1))
        )
        return "done"

    clock = inngest.ManualClock()
    async with make_engine(client, [fn], clock=clock, chain_seconds=0) as engine:
        log = log_calls(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_step(engine, run.id, "work")
        await asyncio.sleep(0.05)
        before = list(log.calls)
        clock.advance(61)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    # Before the sleep ended: the first call (it planned both) and the step's own call.
    assert before.count(None) == 1, before
    assert len(before) == 2, before
    assert log.calls[len(before) :] == [None], log.calls


async def test_a_wait_mode_group_waits_for_its_running_step_when_its_sleep_ends(
    make_engine: EngineFactory,
) -> None:
    """The group's sleep ends while its step still runs: no call until the step is done
    (the group's last member to finish calls the function, once)."""
    client = inngest.Client(app_id="live-jobs")
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 1

    @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        await ctx.group.parallel(
            (lambda: ctx.step.sleep("nap", 60_000), lambda: ctx.step.run("work", work))
        )
        return "done"

    clock = inngest.ManualClock()
    async with make_engine(client, [fn], clock=clock, chain_seconds=0) as engine:
        log = log_calls(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        for _ in range(300):
            if len(log.calls) == 2:  # the first call, then the step's own (now running)
                break
            await asyncio.sleep(0.01)
        await wait_for_job(engine, run.id, "sleep")
        clock.advance(61)
        await wait_for_step(engine, run.id, "nap")
        await asyncio.sleep(0.05)
        during = list(log.calls)
        gate.set()
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert during.count(None) == 1, during
    assert log.calls[len(during) :] == [None], log.calls
