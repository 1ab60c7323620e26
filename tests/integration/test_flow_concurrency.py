"""Concurrency limits (protocol §10) on both transports: step calls in flight per function
and per key, sleeping and waiting runs holding no slot, the run-level form, priority order
within a key, fairness across keys, and what a held run shows."""

from __future__ import annotations

import asyncio
import datetime
import functools
import itertools

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_job
from tests.integration.flow_support import Spans, all_finished, runs_of, until

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_limit_one_never_overlaps_two_step_calls(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="flow")
    spans = Spans()
    if flavour == "async":

        @client.create_function(
            fn_id="one",
            trigger=inngest.TriggerEvent(event="one"),
            concurrency=[inngest.Concurrency(limit=1)],
        )
        async def fn(ctx: inngest.Context) -> list[str]:
            i = ctx.event.data["i"]
            return [await ctx.step.run(s, spans.step, f"{i}{s}") for s in ("a", "b", "c")]

    else:

        @client.create_function(
            fn_id="one",
            trigger=inngest.TriggerEvent(event="one"),
            concurrency=[inngest.Concurrency(limit=1)],
        )
        def fn(ctx: inngest.ContextSync) -> list[str]:
            i = ctx.event.data["i"]
            return [ctx.step.run(s, spans.step_sync, f"{i}{s}") for s in ("a", "b", "c")]

    async with make_engine(client, [fn]) as engine:
        ids = await engine.send([inngest.Event(name="one", data={"i": i}) for i in range(5)])
        runs = await runs_of(engine, ids)
        done = await all_finished(engine, runs)
        histories = [await engine.history(run.id) for run in runs]
    assert [d.status for d in done] == ["Completed"] * 5
    assert [d.output for d in done] == [[f"{i}a", f"{i}b", f"{i}c"] for i in range(5)]
    assert spans.overlaps() == []
    assert spans.peak[""] == 1
    # The recorded times say the same: no two steps' [start, end] intervals overlap.
    recorded = sorted(
        (entry.started_at or 0, entry.ended_at) for history in histories for entry in history
    )
    assert len(recorded) == 15
    for (_, end), (start, _) in itertools.pairwise(recorded):
        assert start >= end


async def test_a_limit_per_key_holds_each_key_and_lets_the_others_go(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="flow")
    spans = Spans()

    @client.create_function(
        fn_id="keyed",
        trigger=inngest.TriggerEvent(event="keyed"),
        concurrency=[inngest.Concurrency(limit=2, key="event.data.customer")],
    )
    async def fn(ctx: inngest.Context) -> str:
        customer = ctx.event.data["customer"]
        await ctx.step.run("a", spans.step, "a", customer, 0.05)
        return await ctx.step.run("b", spans.step, "b", customer, 0.05)

    async with make_engine(client, [fn]) as engine:
        events = [
            inngest.Event(name="keyed", data={"customer": c, "i": i})
            for i in range(4)
            for c in ("x", "y", "z")
        ]
        done = await all_finished(engine, await runs_of(engine, await engine.send(events)))
    assert all(d.status == "Completed" for d in done)
    assert spans.peak == {"x": 2, "y": 2, "z": 2}
    # The three keys ran side by side: at some moment more than two steps were in flight.
    moments = sorted(s[1] for s in spans.spans)
    in_flight = max(sum(1 for s in spans.spans if s[1] <= t < s[2]) for t in moments)
    assert in_flight > 2


async def test_a_sleeping_or_waiting_run_holds_no_slot(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()

    @client.create_function(
        fn_id="sleeper",
        trigger=inngest.TriggerEvent(event="sleeper"),
        concurrency=[inngest.Concurrency(limit=1)],
    )
    async def fn(ctx: inngest.Context) -> str:
        kind = ctx.event.data["kind"]
        await ctx.step.run("before", lambda: kind)
        if kind == "sleep":
            await ctx.step.sleep("nap", datetime.timedelta(hours=1))
        elif kind == "wait":
            await ctx.step.wait_for_event("w", event="never", timeout=datetime.timedelta(hours=1))
        return await ctx.step.run("after", lambda: kind)

    async with make_engine(client, [fn], clock=clock) as engine:
        [sleeper, waiter] = await runs_of(
            engine,
            await engine.send(
                [
                    inngest.Event(name="sleeper", data={"kind": "sleep"}),
                    inngest.Event(name="sleeper", data={"kind": "wait"}),
                ]
            ),
        )
        await wait_for_job(engine, sleeper.id, "sleep")
        await wait_for_job(engine, waiter.id, "pause-timeout")
        [quick] = await runs_of(
            engine, await engine.send(inngest.Event(name="sleeper", data={"kind": "go"}))
        )
        # Both others are parked: the limit of 1 does not keep this one out.
        assert (await engine.wait(quick.id, timeout=5)).status == "Completed"
        assert (await engine.run(sleeper.id)).status == "Running"
        clock.advance(3601)
        done = await all_finished(engine, [sleeper, waiter])
    assert [d.output for d in done] == ["sleep", "wait"]


async def test_run_level_concurrency_holds_whole_runs_even_asleep(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()

    @client.create_function(
        fn_id="whole",
        trigger=inngest.TriggerEvent(event="whole"),
        concurrency=[inngest.RunConcurrency(limit=1)],
    )
    async def fn(ctx: inngest.Context) -> str:
        await ctx.step.run("a", lambda: "a")
        await ctx.step.sleep("nap", datetime.timedelta(minutes=5))
        return await ctx.step.run("b", lambda: ctx.event.data["i"])

    async with make_engine(client, [fn], clock=clock) as engine:
        [first] = await runs_of(
            engine, await engine.send(inngest.Event(name="whole", data={"i": 1}))
        )
        await wait_for_job(engine, first.id, "sleep")
        [second] = await runs_of(
            engine, await engine.send(inngest.Event(name="whole", data={"i": 2}))
        )
        await asyncio.sleep(0.2)
        held = await engine.run(second.id)
        waiting = await engine.waiting_for(second.id)
        history = await engine.history(second.id)
        clock.advance(301)
        assert (await engine.wait(first.id, timeout=5)).output == 1
        await wait_for_job(engine, second.id, "sleep")
        clock.advance(301)
        assert (await engine.wait(second.id, timeout=5)).output == 2
    assert held.status == "Queued"
    assert waiting is not None
    assert waiting["waiting_for"] == "concurrency"
    assert waiting["level"] == "run"
    assert waiting["limit"] == 1
    assert history[-1].op == "Waiting"
    assert history[-1].output == waiting


async def test_higher_priority_runs_queued_later_start_first(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    gate, blocking = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def block() -> None:
        blocking.set()
        await gate.wait()

    @client.create_function(
        fn_id="prio",
        trigger=inngest.TriggerEvent(event="prio"),
        concurrency=[inngest.Concurrency(limit=1)],
        priority=inngest.Priority(run="event.data.boost"),
    )
    async def fn(ctx: inngest.Context) -> None:
        name = ctx.event.data["name"]
        if name == "blocker":
            await ctx.step.run("block", block)
        else:
            await ctx.step.run("go", lambda: order.append(name))

    async with make_engine(client, [fn]) as engine:
        [blocker] = await runs_of(
            engine,
            await engine.send(inngest.Event(name="prio", data={"name": "blocker", "boost": 0})),
        )
        await asyncio.wait_for(blocking.wait(), 5)
        queued = [("low-1", 0), ("low-2", 0), ("high", 600), ("mid", 60), ("late-low", -60)]
        ids = await engine.send(
            [inngest.Event(name="prio", data={"name": n, "boost": b}) for n, b in queued]
        )
        runs = await runs_of(engine, ids)
        await asyncio.sleep(0.1)
        assert {(await engine.run(r.id)).status for r in runs} == {"Queued"}
        gate.set()
        await all_finished(engine, [blocker, *runs])
    assert order == ["high", "mid", "low-1", "low-2", "late-low"]


async def test_a_hot_key_never_starves_a_cold_one(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    started: list[str] = []

    async def work(key: str) -> None:
        started.append(key)
        await asyncio.sleep(0.01)

    @client.create_function(
        fn_id="fair",
        trigger=inngest.TriggerEvent(event="fair"),
        concurrency=[inngest.Concurrency(limit=2, key="event.data.key")],
    )
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.run("work", work, ctx.event.data["key"])

    async with make_engine(client, [fn]) as engine:
        await engine.send([inngest.Event(name="fair", data={"key": "hot"}) for _ in range(300)])
        await until(lambda: _started(started, 2), what="the hot key to start")
        [cold] = await runs_of(
            engine, await engine.send(inngest.Event(name="fair", data={"key": "cold"}))
        )
        done = await engine.wait(cold.id, timeout=5)
        hot_before_cold = started.index("cold")
    assert done.status == "Completed"
    # A run on the cold key went as soon as it came, not after the hot key's backlog.
    assert hot_before_cold < 40, hot_before_cold


async def _started(started: list[str], count: int) -> bool:
    return len(started) >= count


async def test_an_env_scoped_limit_is_shared_by_the_functions_that_name_its_key(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="flow")
    spans = Spans()
    shared = inngest.Concurrency(limit=1, key="'openai'", scope="env")

    @client.create_function(
        fn_id="first", trigger=inngest.TriggerEvent(event="ai"), concurrency=[shared]
    )
    async def first(ctx: inngest.Context) -> str:
        return await ctx.step.run("call", spans.step, "first", "openai")

    @client.create_function(
        fn_id="second", trigger=inngest.TriggerEvent(event="ai"), concurrency=[shared]
    )
    async def second(ctx: inngest.Context) -> str:
        return await ctx.step.run("call", spans.step, "second", "openai")

    async with make_engine(client, [first, second]) as engine:
        ids = await engine.send([inngest.Event(name="ai") for _ in range(3)])
        runs = [run for event_id in ids for run in await engine.runs(event_id)]
        done = await all_finished(engine, runs)
    assert len(done) == 6
    assert all(d.status == "Completed" for d in done)
    assert spans.peak == {"openai": 1}


async def test_a_queued_run_can_be_cancelled_and_never_runs(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    gate, going = asyncio.Event(), asyncio.Event()
    ran: list[int] = []

    async def hold() -> None:
        going.set()
        await gate.wait()

    @client.create_function(
        fn_id="cancellable",
        trigger=inngest.TriggerEvent(event="c"),
        concurrency=[inngest.Concurrency(limit=1)],
    )
    async def fn(ctx: inngest.Context) -> None:
        n: int = ctx.event.data["n"]
        if n == 0:
            await ctx.step.run("hold", hold)
        await ctx.step.run("mark", lambda: ran.append(n))

    async with make_engine(client, [fn]) as engine:
        runs = await runs_of(engine, await engine.send(inngest.Event(name="c", data={"n": 0})))
        await asyncio.wait_for(going.wait(), 5)
        runs += await runs_of(
            engine, await engine.send([inngest.Event(name="c", data={"n": n}) for n in (1, 2)])
        )
        await until(lambda: _waiting(engine, runs[1].id), what="run 1 to wait for its slot")
        assert await engine.cancel(runs[1].id)
        assert await engine.waiting_for(runs[1].id) is None
        gate.set()
        done = await all_finished(engine, runs)
    assert [d.status for d in done] == ["Completed", "Cancelled", "Completed"]
    assert ran == [0, 2]


async def _waiting(engine: inngest.Engine, run_id: str) -> bool:
    return await engine.waiting_for(run_id) is not None


async def test_a_parallel_groups_steps_take_slots_too(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    spans = Spans()

    @client.create_function(
        fn_id="fan",
        trigger=inngest.TriggerEvent(event="fan"),
        concurrency=[inngest.Concurrency(limit=2)],
    )
    async def fn(ctx: inngest.Context) -> tuple[str, ...]:
        return await ctx.group.parallel(
            tuple(
                functools.partial(ctx.step.run, f"p{i}", spans.step, f"p{i}", "fan", 0.05)
                for i in range(5)
            )
        )

    async with make_engine(client, [fn]) as engine:
        [run] = await runs_of(engine, await engine.send(inngest.Event(name="fan")))
        done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == [f"p{i}" for i in range(5)]
    assert spans.peak == {"fan": 2}


async def test_a_run_held_past_its_start_timeout_is_cancelled_at_the_deadline(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    gate, going = asyncio.Event(), asyncio.Event()
    ran: list[int] = []

    async def hold() -> None:
        going.set()
        await gate.wait()

    @client.create_function(
        fn_id="deadline",
        trigger=inngest.TriggerEvent(event="d"),
        concurrency=[inngest.Concurrency(limit=1)],
        timeouts=inngest.Timeouts(start=datetime.timedelta(seconds=10)),
    )
    async def fn(ctx: inngest.Context) -> None:
        n: int = ctx.event.data["n"]
        if n == 0:
            await ctx.step.run("hold", hold)
        await ctx.step.run("mark", lambda: ran.append(n))

    async with make_engine(client, [fn], clock=clock) as engine:
        [blocker] = await runs_of(engine, await engine.send(inngest.Event(name="d", data={"n": 0})))
        await asyncio.wait_for(going.wait(), 5)
        [held] = await runs_of(engine, await engine.send(inngest.Event(name="d", data={"n": 1})))
        await until(lambda: _waiting(engine, held.id), what="the run to wait for its slot")
        clock.advance(11)
        cancelled = await engine.wait(held.id, timeout=5)  # the blocker still holds the slot
        gate.set()
        assert (await engine.wait(blocker.id, timeout=5)).status == "Completed"
    assert cancelled.status == "Cancelled"
    assert cancelled.error is not None
    assert cancelled.error["message"] == "the run did not start within 10s"
    assert ran == [0]
