"""Parallel plans run in one call (``sdk/plans.py``, ``engine/plans.py``): our SDK runs a
plan of ``step.run`` steps in the call that found it and the engine records the outcomes
in one unit. Results, the retries of failed branches, race mode, nested groups,
``asyncio.gather``, a crash mid-plan and reruns; on both transports and both stores.
``test_parallel.py`` holds the protocol's own shape (``parallel_plans=False``), and the
official SDK's request counts are in ``tests/e2e/test_official_sdk.py``."""

from __future__ import annotations

import asyncio
import functools
import pathlib
from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, log_calls, run_to_end
from tests.integration.test_parallel import Recorder

pytestmark = pytest.mark.backends("sqlite", "postgres")


def fan_out(
    app_id: str, n: int, flavour: str, rec: Recorder
) -> tuple[inngest.Client, inngest.Function[Any]]:
    """A group of ``n`` steps, then one step after it."""
    client = inngest.Client(app_id=app_id)

    def work(i: int) -> int:
        rec.hit(f"s{i}")
        return i * 10

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[Any]:
            got = await ctx.group.parallel(
                tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(n))
            )
            return [list(got), await ctx.step.run("after", lambda: "after")]

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> list[Any]:
            got = ctx.group.parallel(
                tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(n))
            )
            return [list(got), ctx.step.run("after", lambda: "after")]

    return client, fn


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_plan_runs_in_the_call_that_found_it(
    make_engine: EngineFactory, flavour: str
) -> None:
    rec = Recorder()
    # A sync plan must fit the steps' thread pool (6 threads on a 2-core machine over HTTP).
    n = 20 if flavour == "async" else 5
    client, fn = fan_out("plans-one-call", n, flavour, rec)
    # A budget no loaded machine spends: the call goes on past the plan to "after".
    async with make_engine(client, [fn], chain_seconds=1.0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == [[i * 10 for i in range(n)], "after"]
    assert sorted(rec.calls) == sorted(f"s{i}" for i in range(n))  # each ran once
    # One call: the plan, the step after it and the return, recorded together.
    assert log.calls == [None]
    assert sorted(h.user_id for h in history) == sorted([*(f"s{i}" for i in range(n)), "after"])
    assert history[-1].user_id == "after"


async def test_without_parallel_plans_each_planned_step_is_its_own_call(
    make_engine: EngineFactory,
) -> None:
    rec = Recorder()
    client, fn = fan_out("plans-off", 5, "async", rec)
    async with make_engine(client, [fn], parallel_plans=False) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.output == [[0, 10, 20, 30, 40], "after"]
    assert log.targeted == 5  # protocol §7: the plan, a call per step, the join
    assert log.discoveries == 2


async def test_a_sync_plan_larger_than_its_thread_pool_keeps_a_call_per_step(
    make_engine: EngineFactory, transport_kind: str
) -> None:
    """Its steps would wait for each other inside one call; calls of their own run side by
    side. In process the pool has 32 threads; over HTTP the loop's default executor."""
    rec = Recorder()
    n = 40
    client, fn = fan_out("plans-sync-big", n, "sync", rec)
    async with make_engine(client, [fn], chain_seconds=1.0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [[i * 10 for i in range(n)], "after"]
    assert log.targeted == n


async def test_a_sync_plan_with_no_thread_pool_keeps_a_call_per_step(
    make_engine: EngineFactory, transport_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INNGEST_THREAD_POOL_MAX_WORKERS=0 runs a served app's sync steps on the thread that
    answers: a plan in one call would run them one after another."""
    monkeypatch.setenv("INNGEST_THREAD_POOL_MAX_WORKERS", "0")
    rec = Recorder()
    client, fn = fan_out("plans-sync-inline", 2, "sync", rec)
    async with make_engine(client, [fn], chain_seconds=1.0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.output == [[0, 10], "after"]
    # The variable sizes a served app's pool; in process the engine's own pool runs them.
    assert log.targeted == (2 if transport_kind == "http" else 0)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_failed_branch_is_retried_alone(make_engine: EngineFactory, flavour: str) -> None:
    """Two branches fail once: each is retried in a call targeted at it, the others are
    recorded from the first call and never run again, and one call follows both."""
    client = inngest.Client(app_id="plans-retry")
    rec = Recorder()
    failing = {1, 3}

    def work(i: int) -> int:
        rec.hit(f"s{i}")
        if i in failing and rec.count(f"s{i}") == 1:
            raise ValueError(f"branch {i} failed")
        return i

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def fn(ctx: inngest.Context) -> list[int]:
            got = await ctx.group.parallel(
                tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(5))
            )
            return list(got)

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def fn(ctx: inngest.ContextSync) -> list[int]:
            got = ctx.group.parallel(
                tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(5))
            )
            return list(got)

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == [0, 1, 2, 3, 4]
    assert [rec.count(f"s{i}") for i in range(5)] == [1, 2, 1, 2, 1]
    # The plan's call, one retry per failed branch, then a single call for the join.
    assert sorted(c for c in log.calls if c is not None) == sorted(
        h.step_id for h in history if h.user_id in ("s1", "s3") and h.error is None
    )
    assert log.discoveries == 2
    failed_attempts = [h for h in history if h.error is not None]
    assert sorted(h.user_id for h in failed_attempts) == ["s1", "s3"]
    assert all(h.attempt == 0 for h in failed_attempts)


async def test_a_branch_that_fails_for_good_fails_the_group_after_its_siblings(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="plans-final")
    rec = Recorder()

    def work(i: int) -> int:
        rec.hit(f"s{i}")
        if i in (0, 2):
            raise ValueError(f"branch {i} is broken")
        return i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def fn(ctx: inngest.Context) -> str:
        try:
            await ctx.group.parallel(
                tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(4))
            )
        except inngest.StepError as err:
            return f"caught: {err}"
        return "no error"

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output is not None
    assert "is broken" in run.output
    # Each broken branch had its two attempts; the others ran once.
    assert [rec.count(f"s{i}") for i in range(4)] == [2, 1, 2, 1]


async def test_race_mode_keeps_one_call_per_step(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="plans-race")
    rec = Recorder()

    def work(i: int) -> int:
        rec.hit(f"s{i}")
        return i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[int]:
        got = await ctx.group.parallel(
            tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(3)),
            parallel_mode=inngest.ParallelMode.RACE,
        )
        return list(got)

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [0, 1, 2]
    assert log.targeted == 3  # planned, then a call per step, as protocol §7 says


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_nested_groups_run_as_plans(make_engine: EngineFactory, flavour: str) -> None:
    client = inngest.Client(app_id="plans-nested")
    rec = Recorder()

    def work(name: str) -> str:
        rec.hit(name)
        return name

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[Any]:
            async def left() -> list[Any]:
                inner = await ctx.group.parallel(
                    (
                        lambda: ctx.step.run("a", work, "a"),
                        lambda: ctx.step.run("b", work, "b"),
                    )
                )
                return [list(inner), await ctx.step.run("c", work, "c")]

            got = await ctx.group.parallel((left, lambda: ctx.step.run("d", work, "d")))
            return list(got)

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> list[Any]:
            def left() -> list[Any]:
                inner = ctx.group.parallel(
                    (
                        lambda: ctx.step.run("a", work, "a"),
                        lambda: ctx.step.run("b", work, "b"),
                    )
                )
                return [list(inner), ctx.step.run("c", work, "c")]

            got = ctx.group.parallel((left, lambda: ctx.step.run("d", work, "d")))
            return list(got)

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [[["a", "b"], "c"], "d"]
    assert sorted(rec.calls) == ["a", "b", "c", "d"]
    assert log.targeted == 0


async def test_asyncio_gather_runs_as_one_plan(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="plans-gather")
    rec = Recorder()

    async def work(i: int) -> int:
        rec.hit(f"g{i}")
        await asyncio.sleep(0.01 * (10 - i))  # finish in reverse order, 10 ms apart
        return i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[int]:
        return list(await asyncio.gather(*(ctx.step.run(f"g{i}", work, i) for i in range(10))))

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.output == list(range(10))
    assert sorted(rec.calls) == sorted(f"g{i}" for i in range(10))
    assert log.calls == [None]
    # Recorded in the order the steps finished: the stack a replay hands results out in.
    assert [h.user_id for h in history] == [f"g{i}" for i in reversed(range(10))]


@pytest.mark.parametrize("transport_kind", ["inprocess"], indirect=True)
async def test_a_planned_step_costs_one_task_beside_its_branch(make_engine: EngineFactory) -> None:
    """A fan-out of thousands of steps allocates per step whatever its plan costs, and the
    collector walks all of it: a coroutine handler runs in its step's own task, not in a
    task of its own created by a task that waits for it (``Execution._start_step``)."""
    client = inngest.Client(app_id="plans-tasks")

    async def work(i: int) -> int:
        return i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> int:
        n = ctx.event.data["n"]
        got = await ctx.group.parallel(
            tuple(functools.partial(ctx.step.run, f"s{i}", work, i) for i in range(n))
        )
        return sum(got)

    loop = asyncio.get_running_loop()
    created = 0

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        async with make_engine(client, [fn]) as engine:
            tasks = []
            for n in (20, 120):
                before = created
                run = await run_to_end(engine, inngest.Event(name="go", data={"n": n}))
                assert run.output == sum(range(n)), run.error
                tasks.append(created - before)
    finally:
        loop.set_task_factory(None)
    # Per step: the group's branch task and the step's task; the rest is per run.
    assert tasks[1] - tasks[0] <= 2 * 100 + 10, tasks


async def test_an_unserialisable_branch_fails_the_run_naming_its_step(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="plans-unserialisable")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> Any:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("fine", lambda: 1), lambda: ctx.step.run("bad", object))
        )

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert "step 'bad'" in run.error["message"]


def gated(
    rec: Recorder, gate: asyncio.Event | None
) -> tuple[inngest.Client, inngest.Function[Any]]:
    """Two plans in a row; the second waits for ``gate``. The first plan's steps take
    longer than the chain budget, so its call answers before the second plan starts."""
    client = inngest.Client(app_id="plans-crash")

    async def work(name: str) -> str:
        rec.hit(name)
        if name == "d" and gate is not None:
            await gate.wait()  # the engine stops while the second plan is in flight
        elif name in ("a", "b"):
            await asyncio.sleep(0.03)
        return name

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[Any]:
        first = await ctx.group.parallel(
            (lambda: ctx.step.run("a", work, "a"), lambda: ctx.step.run("b", work, "b"))
        )
        second = await ctx.group.parallel(
            (lambda: ctx.step.run("c", work, "c"), lambda: ctx.step.run("d", work, "d"))
        )
        return [list(first), list(second)]

    return client, fn


async def test_a_crash_mid_plan_reruns_only_what_was_not_recorded(db_path: pathlib.Path) -> None:
    rec = Recorder()
    gate = asyncio.Event()
    client, fn = gated(rec, gate)
    options: dict[str, Any] = {"database": db_path, "durability": "normal", "chain_seconds": 0.01}
    async with inngest.Engine(client, [fn], **options) as first:
        [event_id] = await first.send(inngest.Event(name="go"))
        [run] = await first.runs(event_id)
        for _ in range(500):
            if "d" in rec.calls:
                break
            await asyncio.sleep(0.01)
        assert "d" in rec.calls
        recorded = {h.user_id for h in await first.history(run.id)}
    assert recorded == {"a", "b"}  # the first plan's answer was recorded
    client2, fn2 = gated(rec, None)
    async with inngest.Engine(client2, [fn2], **options) as second:
        done = await second.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == [["a", "b"], ["c", "d"]]
    # a and b were recorded: never run again; c and d were not: they ran again.
    assert [rec.count(n) for n in "abcd"] == [1, 1, 2, 2]


async def test_a_rerun_from_a_step_of_a_plan_reuses_its_siblings(
    make_engine: EngineFactory,
) -> None:
    rec = Recorder()
    client, fn = fan_out("plans-rerun", 4, "async", rec)
    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
        # The step recorded first: a rerun from it would reuse nothing without its batch.
        first = history[0].user_id
        rec.calls.clear()
        again = await engine.wait(await engine.rerun(run.id, from_step=first), timeout=10)
    assert again.status == "Completed", again.error
    assert again.output == run.output
    assert rec.calls == [first]  # its siblings were reused, not run
