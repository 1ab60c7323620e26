"""Reruns (``Engine.rerun``): a new run with the same events, from the start or from a step
whose earlier steps reuse the recorded results; on both transports."""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import mainspring as inngest
from mainspring.protocol.step_ids import hash_step_id
from tests.conftest import EngineFactory, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


class Shop:
    """A three-step order whose ``charge`` step fails while ``failing`` is set; every step
    body counts its executions."""

    def __init__(self, client: inngest.Client) -> None:
        self.executed: collections.Counter[str] = collections.Counter()
        self.failing = True

        def reserve(order: str) -> str:
            self.executed["reserve"] += 1
            return f"reserved {order}"

        def charge(order: str) -> str:
            self.executed["charge"] += 1
            if self.failing:
                raise inngest.NonRetriableError("card declined")
            return f"charged {order}"

        def ship(order: str) -> str:
            self.executed["ship"] += 1
            return f"shipped {order}"

        @client.create_function(
            fn_id="order", trigger=inngest.TriggerEvent(event="shop/order"), retries=0
        )
        async def order(ctx: inngest.Context) -> list[Any]:
            order_id = ctx.event.data["id"]
            done = [await ctx.step.run("reserve", reserve, order_id)]
            done.append(await ctx.step.run("charge", charge, order_id))
            done.append(await ctx.step.run("ship", ship, order_id))
            return done

        self.function = order


async def _failed_order(engine: inngest.Engine, order_id: str = "o-1") -> inngest.Run:
    run = await run_to_end(engine, inngest.Event(name="shop/order", data={"id": order_id}))
    assert run.status == "Failed", run
    return run


async def test_rerun_from_the_start_runs_every_step_again(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    async with make_engine(client, [shop.function]) as engine:
        original = await _failed_order(engine)
        shop.failing = False
        new_id = await engine.rerun(original.id)
        rerun = await engine.wait(new_id, timeout=10)
        origin = await engine.rerun_origin(new_id)
        # The same triggering event: listed among the event's runs.
        listed = [r.id for r in await engine.runs(original.event_id)]
    assert new_id != original.id
    assert rerun.status == "Completed", rerun.error
    assert rerun.output == ["reserved o-1", "charged o-1", "shipped o-1"]
    assert rerun.event_id == original.event_id
    assert shop.executed == {"reserve": 2, "charge": 2, "ship": 1}
    assert origin is not None
    assert (origin.original_id, origin.from_step, origin.copied) == (original.id, None, 0)
    assert listed == [original.id, new_id]


@pytest.mark.parametrize("named", ["user id", "hashed id"])
async def test_rerun_from_a_failed_step_reuses_the_earlier_results(
    make_engine: EngineFactory, named: str
) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    step = "charge" if named == "user id" else hash_step_id("charge")
    async with make_engine(client, [shop.function]) as engine:
        original = await _failed_order(engine)
        assert shop.executed == {"reserve": 1, "charge": 1}
        shop.failing = False
        new_id = await engine.rerun(original.id, from_step=step)
        rerun = await engine.wait(new_id, timeout=10)
        history = [(h.user_id, h.op) for h in await engine.history(new_id)]
        origin = await engine.rerun_origin(new_id)
    assert rerun.status == "Completed", rerun.error
    # The recorded result of "reserve" is replayed: its body does not run again.
    assert rerun.output == ["reserved o-1", "charged o-1", "shipped o-1"]
    assert shop.executed == {"reserve": 1, "charge": 2, "ship": 1}
    assert [user_id for user_id, _ in history] == ["reserve", "charge", "ship"]
    assert origin is not None
    assert (origin.original_id, origin.from_step, origin.copied) == (original.id, step, 1)


async def test_rerun_from_a_later_step_of_a_completed_run(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    shop.failing = False
    async with make_engine(client, [shop.function]) as engine:
        original = await run_to_end(engine, inngest.Event(name="shop/order", data={"id": "o-2"}))
        assert original.status == "Completed", original.error
        rerun = await engine.wait(await engine.rerun(original.id, from_step="ship"), timeout=10)
        first = await engine.wait(await engine.rerun(original.id, from_step="reserve"), timeout=10)
    assert rerun.status == "Completed", rerun.error
    assert rerun.output == original.output
    # From "ship": reserve and charge replayed, ship ran again; from "reserve": all three.
    assert shop.executed == {"reserve": 2, "charge": 2, "ship": 3}
    assert first.output == original.output


async def test_rerun_of_a_batch_gets_all_its_events(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    seen: list[list[str]] = []

    @client.create_function(
        fn_id="batch",
        trigger=inngest.TriggerEvent(event="b/item"),
        batch_events=inngest.Batch(max_size=3, timeout="1s"),
    )
    async def batch(ctx: inngest.Context) -> int:
        ids = [e.data["n"] for e in ctx.events]
        seen.append(ids)
        return len(ids)

    async with make_engine(client, [batch]) as engine:
        [first, *_] = await engine.send(
            [inngest.Event(name="b/item", data={"n": str(n)}) for n in range(3)]
        )
        [run] = await engine.runs(first)
        original = await engine.wait(run.id, timeout=10)
        rerun = await engine.wait(await engine.rerun(original.id), timeout=10)
    assert original.output == 3
    assert rerun.status == "Completed", rerun.error
    assert rerun.output == 3
    assert seen == [["0", "1", "2"], ["0", "1", "2"]]


async def test_bad_reruns_are_refused_naming_the_problem(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    async with make_engine(client, [shop.function]) as engine:
        original = await _failed_order(engine)
        with pytest.raises(inngest.RunNotFoundError, match="no run with id 'nope'"):
            await engine.rerun("nope")
        with pytest.raises(inngest.MainspringError, match="never recorded that step") as caught:
            await engine.rerun(original.id, from_step="ship")
        assert "'ship'" in str(caught.value)
        with pytest.raises(inngest.MainspringError, match="from_step"):
            await engine.rerun(original.id, from_step="")
        # Nothing was started by the refusals.
        assert [r.id for r in await engine.runs(original.event_id)] == [original.id]


async def test_a_function_no_longer_registered_is_refused(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    async with make_engine(client, [shop.function]) as engine:
        original = await _failed_order(engine)
    other = inngest.Client(app_id="rerun")

    @other.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="x"))
    async def unrelated(ctx: inngest.Context) -> None:
        return None

    async with make_engine(other, [unrelated]) as engine:
        with pytest.raises(inngest.MainspringError, match="no longer registered") as caught:
            await engine.rerun(original.id)
    assert shop.function.id in str(caught.value)


async def test_reused_steps_keep_their_times_and_say_where_they_ran(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="rerun")
    shop = Shop(client)
    async with make_engine(client, [shop.function]) as engine:
        original = await _failed_order(engine)
        before = {h.user_id: h for h in await engine.history(original.id)}
        shop.failing = False
        first = await engine.wait(await engine.rerun(original.id, from_step="charge"), timeout=10)
        # A rerun of the rerun: what it reuses still names the run that executed it.
        second = await engine.wait(await engine.rerun(first.id, from_step="ship"), timeout=10)
        histories = [await engine.history(run.id) for run in (first, second)]
    reserve = before["reserve"]
    for run, history in zip((first, second), histories, strict=True):
        entries = {h.user_id: h for h in history}
        copied = entries["reserve"]
        assert copied.copied_from == original.id
        assert (copied.started_at, copied.ended_at) == (reserve.started_at, reserve.ended_at)
        assert copied.started_at is not None
        # The run's own start is the rerun's, after the reused step ended.
        assert run.started_at is not None
        assert run.started_at >= copied.ended_at
    assert entries["charge"].copied_from == first.id
    assert [h.copied_from for h in histories[0]] == [original.id, None, None]
    assert entries["ship"].copied_from is None


class Fan:
    """``prepare``, then ``left``, ``middle`` and ``right`` in one parallel group, then
    ``combine`` of their results. A step body returns its name and the current ``version``
    (so a reused result shows the version that produced it), counts its executions, waits
    its ``delays`` first (the order results are recorded in) and fails while ``failing``
    names it. With ``race``, the group is a race, and ``left`` has a second step,
    ``left-after``, that uses ``left``'s result (or a fallback if it failed)."""

    def __init__(self, client: inngest.Client, *, race: bool = False) -> None:
        self.executed: collections.Counter[str] = collections.Counter()
        self.failing: set[str] = set()
        self.version = 1
        self.delays = {"left": 0.0, "middle": 0.04, "right": 0.12}

        def body(name: str) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                self.executed[name] += 1
                await asyncio.sleep(self.delays[name])
                if name in self.failing:
                    raise inngest.NonRetriableError(f"{name} broke")
                return f"{name}-v{self.version}"

            return run

        def after(value: str) -> str:
            self.executed["left-after"] += 1
            return f"after {value}"

        mode = inngest.ParallelMode.RACE if race else inngest.ParallelMode.WAIT

        @client.create_function(
            fn_id="fan", trigger=inngest.TriggerEvent(event="fan/go"), retries=0
        )
        async def fan(ctx: inngest.Context) -> Any:
            await ctx.step.run("prepare", lambda: "ready")

            async def left() -> str:
                try:
                    value = await ctx.step.run("left", body("left"))
                except inngest.StepError:
                    if not race:
                        raise
                    value = "no left"
                if race:
                    value = await ctx.step.run("left-after", after, value)
                return value

            results = await ctx.group.parallel(
                (
                    left,
                    lambda: ctx.step.run("middle", body("middle")),
                    lambda: ctx.step.run("right", body("right")),
                ),
                parallel_mode=mode,
            )
            return await ctx.step.run("combine", lambda: list(results))

        self.function = fan


async def _fan_run(engine: inngest.Engine, order: list[str]) -> inngest.Run:
    """The fan's run, failed; ``order`` is the order its steps must have been recorded in
    (the premise of the test, set by the delays)."""
    run = await run_to_end(engine, inngest.Event(name="fan/go"))
    assert run.status == "Failed", run
    recorded = [h.user_id for h in await engine.history(run.id) if h.op != "FunctionError"]
    assert recorded == order, recorded
    return run


@pytest.mark.parametrize("plans", [False, True], ids=["call-per-step", "plan-in-one-call"])
async def test_rerun_from_a_parallel_branch_reuses_the_siblings_that_completed(
    make_engine: EngineFactory, plans: bool
) -> None:
    client = inngest.Client(app_id="rerun")
    fan = Fan(client)
    fan.failing = {"middle"}
    # A plan run in one call answers its failed steps after the ones that ran.
    order = (
        ["prepare", "left", "right", "middle"] if plans else ["prepare", "left", "middle", "right"]
    )
    async with make_engine(client, [fan.function], parallel_plans=plans) as engine:
        original = await _fan_run(engine, order)
        fan.failing, fan.version = set(), 2
        new_id = await engine.rerun(original.id, from_step="middle")
        rerun = await engine.wait(new_id, timeout=10)
        history = [(h.user_id, h.copied_from) for h in await engine.history(new_id)]
        origin = await engine.rerun_origin(new_id)
    assert rerun.status == "Completed", rerun.error
    # "right" was recorded after "middle" but is a sibling: reused like "left"; "middle" and
    # what follows the group ran again, "combine" with the new "middle".
    assert rerun.output == ["left-v1", "middle-v2", "right-v1"]
    assert fan.executed == {"left": 1, "middle": 2, "right": 1}
    assert history[:3] == [
        ("prepare", original.id),
        ("left", original.id),
        ("right", original.id),
    ]
    assert [name for name, _ in history[3:]] == ["middle", "combine"]
    assert origin is not None
    assert origin.copied == 3


async def test_what_follows_the_group_runs_again_with_the_new_result(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="rerun")
    fan = Fan(client)
    async with make_engine(client, [fan.function]) as engine:
        original = await run_to_end(engine, inngest.Event(name="fan/go"))
        fan.version = 2
        from_left = await engine.wait(await engine.rerun(original.id, from_step="left"), timeout=10)
        names = [h.user_id for h in await engine.history(from_left.id) if h.copied_from]
    assert original.output == ["left-v1", "middle-v1", "right-v1"]
    # "combine" was recorded in the original, after the group: it runs again, with the new
    # "left", though "left" was the first branch recorded.
    assert from_left.output == ["left-v2", "middle-v1", "right-v1"]
    assert names == ["prepare", "middle", "right"]
    assert fan.executed == {"left": 2, "middle": 1, "right": 1}


@pytest.mark.parametrize("plans", [False, True], ids=["call-per-step", "plan-in-one-call"])
async def test_a_sibling_that_failed_runs_again_with_the_step(
    make_engine: EngineFactory, plans: bool
) -> None:
    client = inngest.Client(app_id="rerun")
    fan = Fan(client)
    fan.failing = {"left", "middle"}
    order = (
        ["prepare", "right", "left", "middle"] if plans else ["prepare", "left", "middle", "right"]
    )
    async with make_engine(client, [fan.function], parallel_plans=plans) as engine:
        original = await _fan_run(engine, order)
        fan.failing, fan.version = set(), 2
        rerun = await engine.wait(await engine.rerun(original.id, from_step="middle"), timeout=10)
    assert rerun.status == "Completed", rerun.error
    # "left" failed before "middle": reusing its failure would fail the rerun again.
    assert rerun.output == ["left-v2", "middle-v2", "right-v1"]
    assert fan.executed == {"left": 2, "middle": 2, "right": 1}


async def test_no_step_that_used_a_rerun_step_is_reused(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")
    fan = Fan(client, race=True)
    fan.failing = {"left", "middle"}
    # A race ends at its first failure that reaches the group: "middle" comes last.
    fan.delays = {"left": 0.0, "right": 0.04, "middle": 0.12}
    async with make_engine(client, [fan.function]) as engine:
        # In a race, "left-after" (which used "left"'s failure) is recorded before "middle".
        original = await _fan_run(engine, ["prepare", "left", "left-after", "right", "middle"])
        fan.failing, fan.version = set(), 2
        from_middle = await engine.wait(
            await engine.rerun(original.id, from_step="middle"), timeout=10
        )
        fan.version = 3
        from_left = await engine.wait(await engine.rerun(original.id, from_step="left"), timeout=10)
    assert from_middle.status == "Completed", from_middle.error
    # "left" runs again (it failed), so "left-after" must too, though it came before "middle".
    assert from_middle.output == ["after left-v2", "middle-v2", "right-v1"]
    assert from_left.status == "Completed", from_left.error
    assert from_left.output == ["after left-v3", "middle-v3", "right-v1"]
    assert fan.executed == {"left": 3, "left-after": 3, "middle": 3, "right": 1}


async def test_a_step_that_only_failed_attempts_can_be_rerun_from(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="rerun")
    calls: collections.Counter[str] = collections.Counter()

    def later(name: str) -> str:
        calls[name] += 1
        if calls[name] == 1:
            raise inngest.RetryAfterError("not yet", datetime.timedelta(hours=1))
        return name

    @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="slow/go"), retries=3)
    async def slow(ctx: inngest.Context) -> list[str]:
        first = await ctx.step.run("first", lambda: "first")
        return [first, await ctx.step.run("second", later, "second")]

    async with make_engine(client, [slow]) as engine:
        [event_id] = await engine.send(inngest.Event(name="slow/go"))
        [run] = await engine.runs(event_id)
        for _ in range(200):  # until the first attempt of "second" has failed
            if any(h.op == "StepError" for h in await engine.history(run.id)):
                break
            await asyncio.sleep(0.01)
        assert await engine.cancel(run.id)
        rerun = await engine.wait(await engine.rerun(run.id, from_step="second"), timeout=10)
        origin = await engine.rerun_origin(rerun.id)
    assert rerun.status == "Completed", rerun.error
    assert rerun.output == ["first", "second"]
    assert origin is not None
    assert origin.copied == 1
    assert calls == {"second": 2}


async def test_a_step_with_no_attempt_of_its_own_is_refused(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="rerun")

    @client.create_function(fn_id="outside", trigger=inngest.TriggerEvent(event="o/go"), retries=0)
    async def outside(ctx: inngest.Context) -> None:
        await ctx.step.run("fine", lambda: 1)
        raise ValueError("outside any step")

    async with make_engine(client, [outside]) as engine:
        run = await run_to_end(engine, inngest.Event(name="o/go"))
        [failure] = [h for h in await engine.history(run.id) if h.op == "FunctionError"]
        with pytest.raises(inngest.MainspringError) as caught:
            await engine.rerun(run.id, from_step=failure.step_id)
        with pytest.raises(inngest.MainspringError) as unknown:
            await engine.rerun(run.id, from_step="nope")
        assert [r.id for r in await engine.runs(run.event_id)] == [run.id]
    assert run.status == "Failed"
    message = str(caught.value)
    assert f"from step {failure.step_id!r}" in message
    assert "no attempt of that step ran" in message
    assert "a failed call of the function (FunctionError)" in message
    assert str(unknown.value).endswith(
        "never recorded that step (name it by its id, as the "
        "function wrote it, or by its hashed id); its steps: 'fine'"
    )
