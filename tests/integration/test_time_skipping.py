"""The testing kit's time machine: the real embedded engine on a manual clock, so that
days of sleeps, waits, retries' backoff and invokes pass in milliseconds of a test."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import time
from typing import Any

import pytest

import mainspring as inngest
from mainspring.testing import TimeMachine, TimeMachineFactory, time_machine

pytest_plugins = ["mainspring.testing.fixtures"]

DAY = datetime.timedelta(days=1)


def app() -> inngest.Client:
    return inngest.Client(app_id="time-skipping")


async def test_a_three_day_sleep_finishes_in_milliseconds(
    mainspring_time_machine: TimeMachineFactory,
) -> None:
    client = app()

    @client.create_function(fn_id="drip", trigger=inngest.TriggerEvent(event="signup"))
    async def drip(ctx: inngest.Context) -> str:
        await ctx.step.run("welcome", lambda: "sent")
        await ctx.step.sleep("wait", datetime.timedelta(days=3))
        return await ctx.step.run("follow-up", lambda: "sent")

    async with mainspring_time_machine(client, [drip]) as tm:
        began, started = time.monotonic(), tm.now
        run = await tm.trigger(inngest.Event(name="signup"))
        took = time.monotonic() - began
        assert run.status == "Completed", run.error
        assert run.output == "sent"
        assert tm.now - started >= datetime.timedelta(days=3)
    assert took < 2.0


async def test_a_wait_with_a_three_day_timeout(mainspring_time_machine: TimeMachineFactory) -> None:
    client = app()

    @client.create_function(fn_id="remind", trigger=inngest.TriggerEvent(event="cart"))
    async def remind(ctx: inngest.Context) -> Any:
        paid = await ctx.step.wait_for_event(
            "paid", event="pay", if_exp="event.data.cart == async.data.cart", timeout=3 * DAY
        )
        return "reminded" if paid is None else paid.data["amount"]

    cart = inngest.Event(name="cart", data={"cart": 7})
    async with mainspring_time_machine(client, [remind]) as tm:
        # Nobody pays: after two days it still waits, after the third it has timed out.
        run_id = await tm.start(cart)
        await tm.advance(2 * DAY)
        assert (await tm.engine.run(run_id)).status == "Running"
        await tm.advance(DAY)
        done = await tm.engine.run(run_id)
        assert (done.status, done.output) == ("Completed", "reminded")

        # The payment comes a day in: the wait takes it.
        run_id = await tm.start(cart)
        await tm.advance(DAY)
        await tm.send(inngest.Event(name="pay", data={"cart": 7, "amount": 12}))
        paid = await tm.fast_forward(run_id)
        assert (paid.status, paid.output) == ("Completed", 12)

        # fast_forward lets the time run out.
        timed_out = await tm.trigger(cart)
        assert timed_out.output == "reminded"


async def test_advance_fires_timers_in_order_never_past_one(
    mainspring_time_machine: TimeMachineFactory,
) -> None:
    client = app()

    @client.create_function(fn_id="twice", trigger=inngest.TriggerEvent(event="go"))
    async def twice(ctx: inngest.Context) -> str:
        await ctx.step.sleep("first", DAY)
        await ctx.step.sleep("second", DAY)
        return "both"

    async with mainspring_time_machine(client, [twice]) as tm:
        run_id = await tm.start(inngest.Event(name="go"))
        # Three days cover both sleeps only if the second starts when the first ends.
        await tm.advance(datetime.timedelta(days=3))
        done = await tm.engine.run(run_id)
        assert (done.status, done.output) == ("Completed", "both")


async def test_retries_wait_out_the_engines_backoff_on_the_clock(
    mainspring_time_machine: TimeMachineFactory,
) -> None:
    client = app()
    attempts: list[int] = []

    @client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event="go"))
    async def flaky(ctx: inngest.Context) -> int:
        def call() -> int:
            attempts.append(ctx.attempt)
            if len(attempts) < 3:
                raise RuntimeError("not yet")
            return len(attempts)

        return await ctx.step.run("call", call)

    # The default backoff: 15 s, then 30 s (with jitter), all skipped.
    async with mainspring_time_machine(client, [flaky]) as tm:
        started = tm.now
        run = await tm.trigger(inngest.Event(name="go"))
        assert (run.status, run.output) == ("Completed", 3)
        assert tm.now - started >= datetime.timedelta(seconds=40)
    assert attempts == [0, 1, 2]


async def test_an_invoke_waits_for_the_child_not_for_its_timeout(
    mainspring_time_machine: TimeMachineFactory,
) -> None:
    client = app()

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="child"))
    async def child(ctx: inngest.Context) -> str:
        await ctx.step.sleep("nap", DAY)
        return "rested"

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="parent"))
    async def parent(ctx: inngest.Context) -> str:
        return await ctx.step.invoke("ask", function=child, timeout=10 * DAY)

    async with mainspring_time_machine(client, [child, parent]) as tm:
        started = tm.now
        run = await tm.trigger(inngest.Event(name="parent"))
        assert (run.status, run.output) == ("Completed", "rested")
        # The child's day passed, not the invoke's ten-day timeout.
        assert DAY <= tm.now - started < 2 * DAY


async def test_settle_names_a_run_that_never_stops_working() -> None:
    client = app()
    never = asyncio.Event()

    @client.create_function(fn_id="stuck", trigger=inngest.TriggerEvent(event="go"))
    async def stuck(ctx: inngest.Context) -> None:
        await ctx.step.run("hang", never.wait)

    async with time_machine(client, [stuck]) as tm:
        run_id = await tm.start(inngest.Event(name="go"))
        with pytest.raises(TimeoutError, match=f"run {run_id} still has work due"):
            await tm.settle(timeout=0.2)
        never.set()
        assert (await tm.fast_forward(run_id)).status == "Completed"


async def test_without_pytest_the_database_is_a_temporary_file() -> None:
    client = app()

    @client.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="go"))
    async def noop(ctx: inngest.Context) -> None:
        return None

    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    async with time_machine(client, [noop], start=start) as tm:
        assert isinstance(tm, TimeMachine)
        assert tm.now == start
        database = pathlib.Path(tm.engine._store.path)  # type: ignore[attr-defined]  # a peek
        assert await asyncio.to_thread(database.exists)
        await tm.advance(60)
        assert tm.now == start + datetime.timedelta(minutes=1)
    assert not await asyncio.to_thread(database.parent.exists)
    with pytest.raises(ValueError, match="only moves forward"):
        await tm.advance(-1)


async def test_a_run_held_by_flow_control_waits_for_the_run_ahead(
    mainspring_time_machine: TimeMachineFactory,
) -> None:
    client = app()

    @client.create_function(
        fn_id="one-at-a-time",
        trigger=inngest.TriggerEvent(event="go"),
        concurrency=[inngest.RunConcurrency(limit=1)],
    )
    async def one_at_a_time(ctx: inngest.Context) -> str:
        await ctx.step.sleep("hold", DAY)
        return "done"

    async with mainspring_time_machine(client, [one_at_a_time]) as tm:
        started = tm.now
        first = await tm.start(inngest.Event(name="go"))
        second = await tm.start(inngest.Event(name="go"))
        # The second run is due but held back for a day: the engine counts as settled.
        await tm.settle()
        assert (await tm.engine.run(second)).status == "Queued"
        done = await tm.fast_forward(second)
        assert done.status == "Completed"
        assert (await tm.engine.run(first)).status == "Completed"
        assert tm.now - started >= 2 * DAY
