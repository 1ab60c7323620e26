"""Batching (protocol §10) on both transports: ``max_size`` fills a batch, the timeout
flushes a partial one, ``key`` splits batches, ``if`` sends other events alone, and
``ctx.events`` holds a batch's events in order (async and sync functions)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory
from tests.integration.flow_support import until

pytestmark = pytest.mark.backends("sqlite", "postgres")


def _batched(client: inngest.Client, flavour: str, **options: Any) -> inngest.Function[Any]:
    if flavour == "async":

        @client.create_function(
            fn_id="batched", trigger=inngest.TriggerEvent(event="item"), **options
        )
        async def fn(ctx: inngest.Context) -> list[object]:
            assert ctx.event == ctx.events[0]
            return [e.data["n"] for e in ctx.events]

        made: inngest.Function[Any] = fn  # **options forwarded: both overloads match
        return made

    @client.create_function(fn_id="batched", trigger=inngest.TriggerEvent(event="item"), **options)
    def fn_sync(ctx: inngest.ContextSync) -> list[object]:
        assert ctx.event == ctx.events[0]
        return [e.data["n"] for e in ctx.events]

    made_sync: inngest.Function[Any] = fn_sync
    return made_sync


async def _outputs(engine: inngest.Engine, event_ids: list[str]) -> list[object]:
    """The outputs of the distinct runs these events went into, in order of their runs."""
    runs: dict[str, inngest.Run] = {}
    for event_id in event_ids:
        for run in await engine.runs(event_id):
            runs[run.id] = run
    done = [await engine.wait(run_id, timeout=5) for run_id in sorted(runs)]
    assert all(run.status == "Completed" for run in done), done
    return [run.output for run in done]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_max_size_fills_a_batch_and_the_timeout_flushes_the_rest(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    fn = _batched(client, flavour, batch_events=inngest.Batch(max_size=3, timeout="5s"))
    async with make_engine(client, [fn], clock=clock) as engine:
        ids = []
        for n in range(7):
            ids += await engine.send(inngest.Event(name="item", data={"n": n}))
        full = await _outputs(engine, ids[:6])
        [partial] = await engine.runs(ids[6])
        await asyncio.sleep(0.1)
        assert (await engine.run(partial.id)).status == "Queued"
        waiting = await engine.waiting_for(partial.id)
        assert waiting is not None
        assert (waiting["waiting_for"], waiting["events"], waiting["max_size"]) == ("batch", 1, 3)
        clock.advance(5)
        rest = await _outputs(engine, ids[6:])
    assert full == [[0, 1, 2], [3, 4, 5]]
    assert rest == [[6]]


async def test_one_send_of_many_events_makes_full_batches(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    fn = _batched(client, "async", batch_events=inngest.Batch(max_size=10, timeout="60s"))
    async with make_engine(client, [fn]) as engine:
        ids = await engine.send([inngest.Event(name="item", data={"n": n}) for n in range(30)])
        outputs = await _outputs(engine, ids)
    assert outputs == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]


async def test_a_key_splits_batches(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    fn = _batched(
        client, "async", batch_events=inngest.Batch(max_size=2, timeout="60s", key="event.data.k")
    )
    async with make_engine(client, [fn]) as engine:
        data = [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 3}, {"k": "b", "n": 4}]
        ids = await engine.send([inngest.Event(name="item", data=d) for d in data])
        outputs = await _outputs(engine, ids)
    assert sorted(outputs) == [[1, 3], [2, 4]]  # type: ignore[type-var]


async def test_events_failing_if_run_alone_at_once(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    fn = _batched(
        client,
        "async",
        batch_events=inngest.Batch(max_size=5, timeout="60s", if_exp="event.data.n % 2 == 0"),
    )
    async with make_engine(client, [fn]) as engine:
        ids = await engine.send([inngest.Event(name="item", data={"n": n}) for n in range(4)])
        odd = await _outputs(engine, [ids[1], ids[3]])
        [even] = await engine.runs(ids[0])
        assert (await engine.run(even.id)).status == "Queued"
    assert odd == [[1], [3]]


async def test_a_batch_shows_under_each_of_its_events_and_dedupes_event_ids(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="flow")
    fn = _batched(client, "async", batch_events=inngest.Batch(max_size=3, timeout="60s"))
    async with make_engine(client, [fn]) as engine:
        first = await engine.send(
            [inngest.Event(name="item", data={"n": n}, id=f"e{n}") for n in range(2)]
        )
        # The same event ids again (a client retrying) add nothing to the batch.
        await engine.send([inngest.Event(name="item", data={"n": n}, id=f"e{n}") for n in range(2)])
        last = await engine.send(inngest.Event(name="item", data={"n": 2}, id="e2"))
        runs = {event_id: await engine.runs(event_id) for event_id in [*first, *last]}
        [run] = runs[first[0]]
        done = await engine.wait(run.id, timeout=5)
    assert all([r.id for r in found] == [run.id] for found in runs.values())
    assert done.output == [0, 1, 2]


async def test_batch_and_throttle_together(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="flow")
    clock = inngest.ManualClock()
    fn = _batched(
        client,
        "async",
        batch_events=inngest.Batch(max_size=2, timeout="5s"),
        throttle=inngest.Throttle(limit=1, period="1m"),
    )
    async with make_engine(client, [fn], clock=clock) as engine:
        ids = await engine.send([inngest.Event(name="item", data={"n": n}) for n in range(4)])
        runs = sorted({run.id for event_id in ids for run in await engine.runs(event_id)})
        assert len(runs) == 2
        await engine.wait(runs[0], timeout=5)
        await until(lambda: _queued(engine, runs[1]), what="the second batch to wait")
        clock.advance(60)
        done = await engine.wait(runs[1], timeout=5)
    assert done.output == [2, 3]


async def _queued(engine: inngest.Engine, run_id: str) -> bool:
    waiting = await engine.waiting_for(run_id)
    return waiting is not None and waiting["waiting_for"] == "throttle"
