"""Controls on when runs start (protocol §10), on both transports, under a manual clock:
throttle (delays, never drops), rate limit and idempotency (skip and say why), debounce
(the latest event wins, ``timeout`` caps the delay, keys apart) and singleton."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory
from tests.integration.flow_support import all_finished, runs_of, until

pytestmark = pytest.mark.backends("sqlite", "postgres")


def _events(name: str, *data: dict[str, Any]) -> list[inngest.Event]:
    return [inngest.Event(name=name, data=d) for d in data]


async def _status(engine: inngest.Engine, run_id: str) -> str:
    return (await engine.run(run_id)).status.value


async def test_throttle_delays_runs_and_never_drops_one(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    started: list[int] = []

    @client.create_function(
        fn_id="throttled",
        trigger=inngest.TriggerEvent(event="t"),
        throttle=inngest.Throttle(limit=1, period=datetime.timedelta(seconds=10)),
    )
    async def fn(ctx: inngest.Context) -> int:
        started.append(ctx.event.data["i"])
        i: int = ctx.event.data["i"]
        return i

    async with make_engine(client, [fn], clock=clock) as engine:
        runs = await runs_of(engine, await engine.send(_events("t", *({"i": i} for i in range(3)))))
        await engine.wait(runs[0].id, timeout=5)
        await asyncio.sleep(0.1)
        assert started == [0]
        assert [await _status(engine, r.id) for r in runs[1:]] == ["Queued", "Queued"]
        waiting = await engine.waiting_for(runs[1].id)
        assert waiting is not None
        assert waiting["waiting_for"] == "throttle"
        assert waiting["limit"] == "1 per 10s"
        history = await engine.history(runs[2].id)
        assert history[-1].op == "Waiting"
        clock.advance(10)
        await engine.wait(runs[1].id, timeout=5)
        await asyncio.sleep(0.1)
        assert started == [0, 1]
        clock.advance(10)
        done = await all_finished(engine, runs)
    assert [d.status for d in done] == ["Completed"] * 3
    assert started == [0, 1, 2]


async def test_throttle_with_a_key_and_a_burst(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()

    @client.create_function(
        fn_id="keyed-throttle",
        trigger=inngest.TriggerEvent(event="kt"),
        throttle=inngest.Throttle(limit=1, period=60_000, burst=2, key="event.data.k"),
    )
    async def fn(ctx: inngest.Context) -> str:
        k: str = ctx.event.data["k"]
        return k

    async with make_engine(client, [fn], clock=clock) as engine:
        data = [{"k": "a"}, {"k": "a"}, {"k": "a"}, {"k": "b"}]
        runs = await runs_of(engine, await engine.send(_events("kt", *data)))
        for run in (runs[0], runs[1], runs[3]):  # a burst of two on "a"; "b" has its own
            assert (await engine.wait(run.id, timeout=5)).status == "Completed"
        assert await _status(engine, runs[2].id) == "Queued"
        clock.advance(60)
        assert (await engine.wait(runs[2].id, timeout=5)).status == "Completed"


async def test_rate_limit_skips_the_excess_and_says_why(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    ran: list[int] = []

    @client.create_function(
        fn_id="limited",
        trigger=inngest.TriggerEvent(event="rl"),
        rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=1)),
    )
    async def fn(ctx: inngest.Context) -> None:
        ran.append(ctx.event.data["i"])

    async with make_engine(client, [fn], clock=clock) as engine:
        ids = await engine.send(_events("rl", *({"i": i} for i in range(3))))
        runs = await runs_of(engine, ids)
        done = await all_finished(engine, runs)
        skipped_history = await engine.history(runs[1].id)
        clock.advance(61)
        [later] = await runs_of(engine, await engine.send(_events("rl", {"i": 3})))
        assert (await engine.wait(later.id, timeout=5)).status == "Completed"
    assert [d.status for d in done] == ["Completed", "Skipped", "Skipped"]
    assert ran == [0, 3]
    error = done[1].error
    assert error is not None
    assert error["name"] == "RateLimited"
    assert error["code"] == "rate_limited"
    assert "rate limit of 1 per 1m" in error["message"]
    [entry] = skipped_history
    assert entry.op == "Skipped"
    assert entry.error == error


async def test_an_idempotency_key_starts_one_run_per_day(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()

    @client.create_function(
        fn_id="charge",
        trigger=inngest.TriggerEvent(event="charge"),
        idempotency="event.data.order",
    )
    async def fn(ctx: inngest.Context) -> str:
        order: str = ctx.event.data["order"]
        return order

    async with make_engine(client, [fn], clock=clock) as engine:
        first, again, other = await runs_of(
            engine,
            await engine.send(_events("charge", {"order": "o1"}, {"order": "o1"}, {"order": "o2"})),
        )
        done = await all_finished(engine, [first, again, other])
        clock.advance(23 * 3600)
        [still] = await runs_of(engine, await engine.send(_events("charge", {"order": "o1"})))
        still_done = await engine.wait(still.id, timeout=5)
        clock.advance(3601)
        [fresh] = await runs_of(engine, await engine.send(_events("charge", {"order": "o1"})))
        fresh_done = await engine.wait(fresh.id, timeout=5)
    assert [d.status for d in done] == ["Completed", "Skipped", "Completed"]
    assert done[1].error is not None
    assert done[1].error["name"] == "IdempotencyKeyUsed"
    assert first.id in done[1].error["message"]
    assert still_done.status == "Skipped"
    assert fresh_done.status == "Completed"


async def test_debounce_runs_once_with_the_last_event(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    seen: list[object] = []

    @client.create_function(
        fn_id="debounced",
        trigger=inngest.TriggerEvent(event="db"),
        debounce=inngest.Debounce(period=datetime.timedelta(seconds=5), key="event.data.user"),
    )
    async def fn(ctx: inngest.Context) -> object:
        seen.append((ctx.event.data["user"], ctx.event.data["n"]))
        return ctx.event.data["n"]

    async with make_engine(client, [fn], clock=clock) as engine:
        runs = []
        for n in range(5):
            runs += await runs_of(engine, await engine.send(_events("db", {"user": "u", "n": n})))
            clock.advance(2)
        [other] = await runs_of(engine, await engine.send(_events("db", {"user": "v", "n": 9})))
        await asyncio.sleep(0.1)
        assert seen == []
        assert await _status(engine, runs[-1].id) == "Queued"
        waiting = await engine.waiting_for(runs[-1].id)
        assert waiting is not None
        assert waiting["waiting_for"] == "debounce"
        clock.advance(5)
        done = await all_finished(engine, [*runs, other])
    assert [d.status for d in done] == ["Skipped"] * 4 + ["Completed", "Completed"]
    assert sorted(seen, key=str) == [("u", 4), ("v", 9)]
    assert done[0].error is not None
    assert done[0].error["name"] == "Debounced"


async def test_debounce_timeout_caps_the_delay(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()

    @client.create_function(
        fn_id="capped",
        trigger=inngest.TriggerEvent(event="cap"),
        debounce=inngest.Debounce(period="10s", timeout="25s"),
    )
    async def fn(ctx: inngest.Context) -> object:
        return ctx.event.data["n"]

    async with make_engine(client, [fn], clock=clock) as engine:
        runs = []
        # An event every 8 s would put the run off for ever; the timeout starts it at 25 s.
        for n in range(4):
            runs += await runs_of(engine, await engine.send(_events("cap", {"n": n})))
            clock.advance(8)
        # t = 32 s: the run of event 3 was due at min(24 + 10, 0 + 25) = 25 s.
        done = await engine.wait(runs[3].id, timeout=5)
    assert done.status == "Completed"
    assert done.output == 3


async def test_singleton_skip_leaves_the_running_run_alone(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    gate, going = asyncio.Event(), asyncio.Event()

    async def hold() -> str:
        going.set()
        await gate.wait()
        return "held"

    @client.create_function(
        fn_id="single",
        trigger=inngest.TriggerEvent(event="single"),
        singleton=inngest.Singleton(mode="skip", key="event.data.k"),
    )
    async def fn(ctx: inngest.Context) -> str:
        if ctx.event.data["hold"]:
            return await ctx.step.run("hold", hold)
        return "quick"

    async with make_engine(client, [fn]) as engine:
        [first] = await runs_of(
            engine, await engine.send(_events("single", {"k": 1, "hold": True}))
        )
        await asyncio.wait_for(going.wait(), 5)
        second, other_key = await runs_of(
            engine,
            await engine.send(_events("single", {"k": 1, "hold": False}, {"k": 2, "hold": False})),
        )
        skipped = await engine.wait(second.id, timeout=5)
        assert (await engine.wait(other_key.id, timeout=5)).status == "Completed"
        gate.set()
        assert (await engine.wait(first.id, timeout=5)).status == "Completed"
        [after] = await runs_of(
            engine, await engine.send(_events("single", {"k": 1, "hold": False}))
        )
        assert (await engine.wait(after.id, timeout=5)).status == "Completed"
    assert skipped.status == "Skipped"
    assert skipped.error is not None
    assert skipped.error["name"] == "SingletonRunning"
    assert first.id in skipped.error["message"]


async def test_singleton_cancel_replaces_the_running_run(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    going = asyncio.Event()
    after_nap: list[int] = []

    async def mark() -> None:
        going.set()

    @client.create_function(
        fn_id="latest",
        trigger=inngest.TriggerEvent(event="latest"),
        singleton=inngest.Singleton(mode="cancel"),
    )
    async def fn(ctx: inngest.Context) -> int:
        n: int = ctx.event.data["n"]
        await ctx.step.run("mark", mark)
        await ctx.step.wait_for_event("nap", event="never", timeout=datetime.timedelta(seconds=2))
        after_nap.append(n)
        return n

    async with make_engine(client, [fn]) as engine:
        [first] = await runs_of(engine, await engine.send(_events("latest", {"n": 1})))
        await asyncio.wait_for(going.wait(), 5)
        await until(lambda: _running(engine, first.id), what="the first run to start")
        [second] = await runs_of(engine, await engine.send(_events("latest", {"n": 2})))
        cancelled = await engine.wait(first.id, timeout=5)
        done = await engine.wait(second.id, timeout=10)
    assert cancelled.status == "Cancelled"
    assert cancelled.error is not None
    assert "singleton" in cancelled.error["message"]
    assert done.status == "Completed"
    assert after_nap == [2]


async def _running(engine: inngest.Engine, run_id: str) -> bool:
    return await _status(engine, run_id) == "Running"


async def test_an_invoke_of_a_skipped_run_fails_at_once(make_engine: EngineFactory) -> None:
    """A parent is told when the singleton skips the child it invoked: its invoke raises
    instead of waiting for its timeout."""
    client = inngest.Client(app_id="flow")
    gate, going = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        going.set()
        await gate.wait()

    @client.create_function(
        fn_id="child",
        trigger=inngest.TriggerEvent(event="child"),
        singleton=inngest.Singleton(mode="skip"),
    )
    async def child(ctx: inngest.Context) -> str:
        await ctx.step.run("hold", hold)
        return "child"

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="parent"))
    async def parent(ctx: inngest.Context) -> str:
        try:
            await ctx.step.invoke("call", function=child, timeout=datetime.timedelta(hours=1))
        except inngest.StepError as exc:
            return f"{exc.name}: {exc.message}"
        return "invoked"

    async with make_engine(client, [child, parent]) as engine:
        [running] = await runs_of(engine, await engine.send(_events("child", {})))
        await asyncio.wait_for(going.wait(), 5)
        [run] = await runs_of(engine, await engine.send(_events("parent", {})))
        done = await engine.wait(run.id, timeout=5)
        gate.set()
        await engine.wait(running.id, timeout=5)
    assert done.status == "Completed", done.error
    assert isinstance(done.output, str)
    assert done.output.startswith("SingletonRunning: singleton: run ")
