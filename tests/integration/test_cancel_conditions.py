"""Cancel conditions: none, expiring, never-matching, and evaluated in full (protocol §8.6).

Each run sleeps for a day under a manual clock, so it is still running when the cancel
events arrive, and only ends early if one of them cancels it. Which cancel conditions are
armed is checked in the store: an event that matches a condition consumes its pause.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, peek, wait_for_job

pytestmark = pytest.mark.backends("sqlite", "postgres")

DAY = 86_400


def sleeper(client: inngest.Client, cancel: Sequence[inngest.Cancel]) -> inngest.Function[str]:
    @client.create_function(
        fn_id="sleeper", trigger=inngest.TriggerEvent(event="job/started"), cancel=list(cancel)
    )
    async def fn(ctx: inngest.Context) -> str:
        await ctx.step.sleep("nap", datetime.timedelta(days=1))
        return await ctx.step.run("after", lambda: "woke")

    return fn


async def start(engine: inngest.Engine, data: dict[str, object]) -> str:
    """Start one run and wait until it sleeps."""
    [event_id] = await engine.send(inngest.Event(name="job/started", data=data))
    [run] = await engine.runs(event_id)
    await wait_for_job(engine, run.id, "sleep")
    return run.id


def armed(engine: inngest.Engine, run_id: str) -> list[str]:
    """The run's stored cancel conditions, by step id (a test-only peek at the store)."""
    rows = peek(
        engine,
        "SELECT step_id FROM pauses WHERE run_id = ? AND kind = 'cancel' ORDER BY step_id",
        run_id,
    )
    return [str(row[0]) for row in rows]


async def sleeps_on(engine: inngest.Engine, clock: inngest.ManualClock, run_id: str) -> None:
    """The run was not cancelled: it is still asleep, and finishes when the day is over."""
    await asyncio.sleep(0.05)  # a cancel job, had one been queued, has had time to run
    assert (await engine.run(run_id)).status == "Running"
    clock.advance(DAY)
    done = await engine.wait(run_id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == "woke"


async def test_a_cancel_without_a_condition_matches_any_event_of_its_name(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(client, [inngest.Cancel(event="job/stop")])
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"id": "j-1"})
        assert armed(engine, run_id) == ["cancel-0"]
        await engine.send(inngest.Event(name="job/other", data={"id": "j-1"}))
        assert armed(engine, run_id) == ["cancel-0"]  # another name: still armed
        await engine.send(inngest.Event(name="job/stop", data={"anything": True}))
        run = await engine.wait(run_id, timeout=5)
        assert run.status == "Cancelled"
        assert armed(engine, run_id) == []


@pytest.mark.parametrize(
    "timeout", ["10m", 600_000, datetime.timedelta(minutes=10)], ids=["str", "ms", "timedelta"]
)
async def test_a_cancel_stops_matching_once_its_timeout_passes(
    make_engine: EngineFactory, timeout: int | datetime.timedelta | str
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(client, [inngest.Cancel(event="job/stop", timeout=timeout)])
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"id": "j-2"})
        clock.advance(10 * 60 + 1)  # the condition expired a second ago
        await engine.send(inngest.Event(name="job/stop", data={"id": "j-2"}))
        await sleeps_on(engine, clock, run_id)


async def test_a_cancel_with_a_timeout_matches_before_it_passes(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(client, [inngest.Cancel(event="job/stop", timeout="10m")])
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"id": "j-3"})
        clock.advance(10 * 60 - 1)  # a second before the condition expires
        await engine.send(inngest.Event(name="job/stop", data={"id": "j-3"}))
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Cancelled"


async def test_a_never_matching_cancel_does_not_disarm_the_ones_after_it(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(
        client,
        [
            inngest.Cancel(event="job/stop", if_exp="false"),
            inngest.Cancel(event="job/stop", if_exp="event.data.id == async.data.id"),
        ],
    )
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"id": "j-4"})
        assert armed(engine, run_id) == ["cancel-1"]  # "false" is not stored at all
        await engine.send(inngest.Event(name="job/stop", data={"id": "j-4"}))
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Cancelled"


#: Conditions the equality index cannot take, an event each that fails and that meets them.
UNINDEXED = [
    pytest.param("async.data.n > event.data.n", {"n": 3}, {"n": 7}, id="greater"),
    pytest.param(
        "event.data.id == async.data.id || async.data.all == true",
        {"id": "j-other", "all": False},
        {"id": "j-other", "all": True},
        id="or",
    ),
    pytest.param(
        "event.data.id == async.data.id && async.data.n > event.data.n",
        {"id": "j-5", "n": 5},
        {"id": "j-5", "n": 6},
        id="and",
    ),
]


@pytest.mark.parametrize(("condition", "misses", "hits"), UNINDEXED)
async def test_an_unindexed_condition_is_evaluated_in_full(
    make_engine: EngineFactory,
    condition: str,
    misses: dict[str, object],
    hits: dict[str, object],
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(client, [inngest.Cancel(event="job/stop", if_exp=condition)])
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"id": "j-5", "n": 5})
        await engine.send(inngest.Event(name="job/stop", data=misses))
        await asyncio.sleep(0.05)
        assert (await engine.run(run_id)).status == "Running"
        assert armed(engine, run_id) == ["cancel-0"]  # false: the condition stays armed
        await engine.send(inngest.Event(name="job/stop", data=hits))
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Cancelled"


async def test_an_unindexed_condition_that_stays_false_lets_the_run_finish(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="cancels")
    clock = inngest.ManualClock()
    fn = sleeper(client, [inngest.Cancel(event="job/stop", if_exp="async.data.n > event.data.n")])
    async with make_engine(client, [fn], clock=clock) as engine:
        run_id = await start(engine, {"n": 5})
        await engine.send([inngest.Event(name="job/stop", data={"n": n}) for n in (1, 4, 5)])
        await sleeps_on(engine, clock, run_id)
