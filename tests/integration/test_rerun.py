"""Reruns (``Engine.rerun``): a new run with the same events, from the start or from a step
whose earlier steps reuse the recorded results; on both transports."""

from __future__ import annotations

import collections
from typing import Any

import pytest

import mainspring as inngest
from mainspring.protocol.step_ids import hash_step_id
from tests.conftest import EngineFactory, run_to_end


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
