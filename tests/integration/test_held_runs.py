"""A deploy that drops a function holds its runs instead of failing them (issue: deploys,
rule 4; ``engine/held.py``).

A run sleeps; the engine restarts without its function (in process: a function list that
lacks it; over HTTP: an app that no longer serves it); the sleep ends. The run is held,
visibly (``waiting_for``, its history, its status), through restarts; it goes on when the
function is back, and fails after the grace period with an error naming the function and
the app. Time is a :class:`~mainspring.ManualClock`: a day of grace costs nothing.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_job

pytestmark = pytest.mark.backends("sqlite", "postgres")

APP = "deploys"
NAPPER = f"{APP}-napper"
NAP = datetime.timedelta(hours=1)
DAY = 24 * 3600


def build(
    *, with_napper: bool, **client_options: Any
) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    """The app: ``napper`` (a step, a one-hour sleep, a step) and ``other``; a deploy that
    drops ``napper`` keeps ``other``."""
    client = inngest.Client(app_id=APP, **client_options)

    @client.create_function(fn_id="napper", trigger=inngest.TriggerEvent(event="nap"))
    async def napper(ctx: inngest.Context) -> list[int]:
        a = await ctx.step.run("a", lambda: 1)
        await ctx.step.sleep("nap", NAP)
        b = await ctx.step.run("b", lambda: 2)
        return [a, b]

    @client.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="other"))
    async def other(ctx: inngest.Context) -> str:
        return "ok"

    return client, [napper, other] if with_napper else [other]


async def until_held(engine: inngest.Engine, run_id: str) -> dict[str, Any]:
    """Until the run is held for its function; what ``waiting_for`` says then."""
    for _ in range(500):
        waiting = await engine.waiting_for(run_id)
        if waiting is not None:
            return waiting
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} was never held: {await engine.run(run_id)}")


async def sleeping_run(make_engine: EngineFactory, clock: inngest.ManualClock) -> str:
    """A napper run, stopped while it sleeps (a clean stop)."""
    client, functions = build(with_napper=True)
    async with make_engine(client, functions, clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="nap"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
    return run.id


async def held_run(
    make_engine: EngineFactory, clock: inngest.ManualClock
) -> tuple[str, dict[str, Any]]:
    """A napper run whose sleep ended under a deploy without napper: held."""
    run_id = await sleeping_run(make_engine, clock)
    client, functions = build(with_napper=False)
    async with make_engine(client, functions, clock=clock) as engine:
        clock.advance(NAP.total_seconds())
        waiting = await until_held(engine, run_id)
    return run_id, waiting


async def test_a_held_run_says_why_and_resumes_when_its_function_is_back(
    make_engine: EngineFactory,
) -> None:
    clock = inngest.ManualClock()
    run_id, waiting = await held_run(make_engine, clock)
    since = waiting["since"]
    assert waiting["waiting_for"] == "function"
    assert waiting["function"] == NAPPER
    assert waiting["app"] == APP
    assert waiting["until"] == since + DAY * 1000
    assert f"function {NAPPER!r} of app {APP!r} is not registered" in waiting["message"]

    # Still held after another start without it, with the same deadline; visible in the
    # run's history and status.
    client, functions = build(with_napper=False)
    async with make_engine(client, functions, clock=clock) as engine:
        clock.advance(3600)
        assert await engine.waiting_for(run_id) == waiting
        run = await engine.run(run_id)
        history = await engine.history(run_id)
    assert run.status == "Running"
    assert run.error is None
    assert history[-1].op == "Waiting"
    assert history[-1].output == waiting
    assert [h.user_id for h in history[:-1]] == ["a", "nap"]

    # The deploy that brings it back: the run goes on where it stopped.
    client, functions = build(with_napper=True)
    async with make_engine(client, functions, clock=clock) as engine:
        run = await engine.wait(run_id, timeout=10)
        assert await engine.waiting_for(run_id) is None
        history = await engine.history(run_id)
    assert run.status == "Completed", run.error
    assert run.output == [1, 2]
    assert [h.user_id for h in history] == ["a", "nap", "b"]


async def test_a_held_run_fails_after_the_grace_period_naming_function_and_app(
    make_engine: EngineFactory,
) -> None:
    clock = inngest.ManualClock()
    run_id, _ = await held_run(make_engine, clock)
    client, functions = build(with_napper=False)
    async with make_engine(client, functions, clock=clock) as engine:
        clock.advance(DAY - 60)
        await asyncio.sleep(0.05)
        assert (await engine.run(run_id)).status == "Running"  # not yet
        clock.advance(60)
        run = await engine.wait(run_id, timeout=10)
        assert await engine.waiting_for(run_id) is None
        assert await engine.jobs(run_id) == []
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "FunctionNotFoundError"
    assert run.error["code"] == "function_not_found"
    message = run.error["message"]
    assert f"function {NAPPER!r} of app {APP!r} was not registered for 1d" in message
    assert "mainspring" not in message


async def test_the_grace_period_is_an_engine_option(make_engine: EngineFactory) -> None:
    clock = inngest.ManualClock()
    run_id = await sleeping_run(make_engine, clock)
    client, functions = build(with_napper=False)
    grace = datetime.timedelta(minutes=5)
    async with make_engine(client, functions, clock=clock, missing_function_grace=grace) as engine:
        clock.advance(NAP.total_seconds())
        waiting = await until_held(engine, run_id)
        assert waiting["until"] - waiting["since"] == 300_000
        clock.advance(300)
        run = await engine.wait(run_id, timeout=10)
    assert run.status == "Failed"
    assert run.error is not None
    assert "was not registered for 5m" in run.error["message"]


async def test_a_held_run_can_be_cancelled(make_engine: EngineFactory) -> None:
    clock = inngest.ManualClock()
    run_id, _ = await held_run(make_engine, clock)
    client, functions = build(with_napper=False)
    async with make_engine(client, functions, clock=clock) as engine:
        assert await engine.cancel(run_id)
        run = await engine.run(run_id)
        assert await engine.waiting_for(run_id) is None
        assert await engine.jobs(run_id) == []
    assert run.status == "Cancelled"
    # Nothing of it is left to resume when the function comes back.
    client, functions = build(with_napper=True)
    async with make_engine(client, functions, clock=clock) as engine:
        clock.advance(DAY)
        await asyncio.sleep(0.05)
        assert (await engine.run(run_id)).status == "Cancelled"


async def test_the_held_runs_of_a_dropped_function_can_be_cancelled_by_its_id(
    make_engine: EngineFactory,
) -> None:
    clock = inngest.ManualClock()
    run_id, _ = await held_run(make_engine, clock)
    client, functions = build(with_napper=False)
    async with make_engine(client, functions, clock=clock) as engine:
        assert await engine.cancel_runs(NAPPER) == [run_id]
        assert (await engine.run(run_id)).status == "Cancelled"
        with pytest.raises(inngest.MainspringError, match="no function 'held-app-typo'"):
            await engine.cancel_runs("held-app-typo")


def debounced(*, served: bool) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    """``later``: debounced for a minute, so its run waits that long before its first
    call; a deploy that drops it keeps ``other``."""
    client = inngest.Client(app_id=APP)

    @client.create_function(
        fn_id="later",
        trigger=inngest.TriggerEvent(event="later"),
        debounce=inngest.Debounce(period=datetime.timedelta(minutes=1)),
    )
    async def later(ctx: inngest.Context) -> int:
        return await ctx.step.run("a", lambda: 1)

    @client.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="other"))
    async def other(ctx: inngest.Context) -> str:
        return "ok"

    return client, [later, other] if served else [other]


async def test_a_run_held_before_it_started_stays_queued_then_starts(
    make_engine: EngineFactory,
) -> None:
    clock = inngest.ManualClock()
    client, functions = debounced(served=True)
    async with make_engine(client, functions, clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="later"))
        [run] = await engine.runs(event_id)
    # Its first call comes due under a deploy without its function.
    client, functions = debounced(served=False)
    async with make_engine(client, functions, clock=clock) as engine:
        clock.advance(60)
        waiting = await until_held(engine, run.id)
        queued = await engine.run(run.id)
    assert waiting["function"] == f"{APP}-later"
    assert queued.status == "Queued"
    assert queued.started_at is None
    client, functions = debounced(served=True)
    async with make_engine(client, functions, clock=clock) as engine:
        done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == 1
    assert done.started_at is not None


@pytest.mark.parametrize(
    "value", [0, -1, float("nan"), float("inf"), True, "24h", datetime.timedelta(0)]
)
def test_a_bad_grace_period_is_refused_naming_the_option(value: Any, tmp_path: Any) -> None:
    client, functions = build(with_napper=True)
    with pytest.raises(ValueError, match="missing_function_grace"):
        inngest.Engine(client, functions, database=tmp_path / "x.db", missing_function_grace=value)
