"""Sleeps and waits for events on the embedded engine (protocol §6.4, §8.1, §8.2)."""

from __future__ import annotations

import asyncio
import datetime

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, peek, run_to_end, wait_for_job, wait_for_pauses

pytestmark = pytest.mark.backends("sqlite", "postgres")


def approval_flow(client: inngest.Client, timeout_ms: int = 5_000) -> inngest.Function[object]:
    @client.create_function(fn_id="approve", trigger=inngest.TriggerEvent(event="order/created"))
    async def approve(ctx: inngest.Context) -> object:
        reply = await ctx.step.wait_for_event(
            "wait-reply",
            event="order/approved",
            if_exp="event.data.id == async.data.id",
            timeout=timeout_ms,
        )
        return None if reply is None else dict(reply.data)

    return approve


async def start(engine: inngest.Engine, order: str) -> str:
    [event_id] = await engine.send(inngest.Event(name="order/created", data={"id": order}))
    [run] = await engine.runs(event_id)
    await wait_for_pauses(engine, run.id)
    return run.id


async def test_a_matching_event_resumes_the_wait(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="waits")
    async with make_engine(client, [approval_flow(client)]) as engine:
        run_id = await start(engine, "o-1")
        await engine.send(inngest.Event(name="order/approved", data={"id": "o-1", "by": "ann"}))
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Completed", run.error
    assert run.output == {"id": "o-1", "by": "ann"}


async def test_other_ids_and_other_names_do_not_match(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="waits")
    async with make_engine(client, [approval_flow(client, timeout_ms=1_000)]) as engine:
        run_id = await start(engine, "o-2")
        await engine.send(
            [
                inngest.Event(name="order/approved", data={"id": "o-999"}),
                inngest.Event(name="order/rejected", data={"id": "o-2"}),
            ]
        )
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Completed", run.error
    assert run.output is None  # timed out


async def test_timeout_gives_none(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="waits")
    clock = inngest.ManualClock()
    async with make_engine(
        client, [approval_flow(client, timeout_ms=60_000)], clock=clock
    ) as engine:
        run_id = await start(engine, "o-3")
        clock.advance(61)
        run = await engine.wait(run_id, timeout=5)
    assert run.status == "Completed", run.error
    assert run.output is None


async def test_an_event_sent_before_the_wait_does_not_match(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="waits")
    early = asyncio.Event()

    @client.create_function(fn_id="late", trigger=inngest.TriggerEvent(event="order/created"))
    async def late(ctx: inngest.Context) -> object:
        await ctx.step.run("before", early.wait)  # the approval is sent meanwhile
        reply = await ctx.step.wait_for_event(
            "wait-reply",
            event="order/approved",
            if_exp="event.data.id == async.data.id",
            timeout=500,
        )
        return None if reply is None else reply.name

    async with make_engine(client, [late]) as engine:
        [event_id] = await engine.send(inngest.Event(name="order/created", data={"id": "o-4"}))
        [run] = await engine.runs(event_id)
        await engine.send(inngest.Event(name="order/approved", data={"id": "o-4"}))
        early.set()
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output is None


async def test_fifty_concurrent_candidates_resume_the_run_once(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="waits")
    async with make_engine(client, [approval_flow(client)]) as engine:
        run_id = await start(engine, "o-5")
        await asyncio.gather(
            *(
                engine.send(inngest.Event(name="order/approved", data={"id": "o-5", "n": n}))
                for n in range(50)
            )
        )
        run = await engine.wait(run_id, timeout=5)
        [(steps,)] = peek(engine, "SELECT count(*) FROM steps WHERE run_id = ?", run_id)
    assert run.status == "Completed", run.error
    assert isinstance(run.output, dict)
    assert run.output["id"] == "o-5"
    assert steps == 1


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_one_second_sleep_inside_a_parallel_group(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="sleeps")
    clock = inngest.ManualClock()

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[object]:
            return list(
                await ctx.group.parallel(
                    (
                        lambda: ctx.step.run("a", lambda: "a"),
                        lambda: ctx.step.sleep("nap", datetime.timedelta(seconds=1)),
                        lambda: ctx.step.run("b", lambda: "b"),
                    )
                )
            )

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> list[object]:
            return list(
                ctx.group.parallel(
                    (
                        lambda: ctx.step.run("a", lambda: "a"),
                        lambda: ctx.step.sleep("nap", datetime.timedelta(seconds=1)),
                        lambda: ctx.step.run("b", lambda: "b"),
                    )
                )
            )

    async with make_engine(client, [fn], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        assert (await engine.run(run.id)).status == "Running"  # asleep: time has not moved
        clock.advance(1)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == ["a", None, "b"]


async def test_a_three_day_sleep_under_a_manual_clock(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="sleeps")
    clock = inngest.ManualClock()

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> str:
        await ctx.step.sleep("three-days", datetime.timedelta(days=3))
        return await ctx.step.run("after", lambda: "woke")

    async with make_engine(client, [fn], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        clock.advance(2 * 86_400)
        await asyncio.sleep(0.1)
        assert (await engine.run(run.id)).status == "Running"
        clock.advance(86_400)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == "woke"


async def test_a_wait_with_a_condition_that_does_not_compile_fails_the_run(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="waits")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.wait_for_event("w", event="x", if_exp="async.data.id ==", timeout=1000)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert "async.data.id ==" in run.error["message"]


async def test_sync_functions_wait_and_invoke(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="syncwaits")

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never"))
    def child(ctx: inngest.ContextSync) -> int:
        return ctx.step.run("ten", lambda: 10)

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="order/created"))
    def parent(ctx: inngest.ContextSync) -> list[object]:
        reply = ctx.step.wait_for_event(
            "reply", event="order/approved", if_exp="event.data.id == async.data.id", timeout=5_000
        )
        value = ctx.step.invoke("call", function=child)
        return [None if reply is None else reply.data["id"], value]

    async with make_engine(client, [child, parent]) as engine:
        [event_id] = await engine.send(inngest.Event(name="order/created", data={"id": "s-1"}))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
        await engine.send(inngest.Event(name="order/approved", data={"id": "s-1"}))
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == ["s-1", 10]


async def test_waits_in_a_race_group_advance_on_their_own(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="racewaits")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        async def quick() -> str:
            first = await ctx.step.run("q1", lambda: "q1")
            return first + await ctx.step.run("q2", lambda: "q2")

        async def waiting() -> object:
            reply = await ctx.step.wait_for_event("w", event="answer", timeout=5_000)
            return None if reply is None else reply.data["v"]

        return list(
            await ctx.group.parallel((quick, waiting), parallel_mode=inngest.ParallelMode.RACE)
        )

    async with make_engine(client, [fn]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        for _ in range(300):
            history = await engine.history(run.id)
            if [h.user_id for h in history] == ["q1", "q2"]:
                break
            await asyncio.sleep(0.01)
        # The quick branch finished both steps while the other still waits.
        assert [h.user_id for h in await engine.history(run.id)] == ["q1", "q2"]
        await engine.send(inngest.Event(name="answer", data={"v": 42}))
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == ["q1q2", 42]
