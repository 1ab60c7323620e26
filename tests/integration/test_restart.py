"""Stopping an engine mid-run and starting another on the same file: nothing is lost,
and recorded steps are not run again (the SIGKILL version lives in tests/e2e)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

import mainspring as inngest
from tests.integration.test_parallel import Recorder

pytestmark = pytest.mark.backends("sqlite", "postgres")


def build(rec: Recorder, gate: asyncio.Event | None) -> tuple[inngest.Client, list[Any]]:
    client = inngest.Client(app_id="restart")

    async def step(name: str) -> str:
        rec.hit(name)
        if name == "b2" and gate is not None:
            await gate.wait()  # the first engine stops while this step is in flight
        return name

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        first = await ctx.step.run("first", step, "first")
        pair = await ctx.group.parallel(
            (
                lambda: ctx.step.run("a", step, "a"),
                lambda: ctx.step.run("b1", step, "b1"),
            )
        )
        second = await ctx.step.run("b2", step, "b2")
        last = await ctx.step.run("last", step, "last")
        return [first, list(pair), second, last]

    return client, [fn]


async def test_a_new_engine_finishes_what_a_stopped_one_started(db_path: pathlib.Path) -> None:
    rec = Recorder()
    gate = asyncio.Event()
    client, functions = build(rec, gate)
    # A call per planned step: the group's steps are recorded one by one before b2 (a
    # crash in the middle of a plan run in one call is in test_parallel_plans.py).
    options: dict[str, Any] = {"parallel_plans": False}
    async with inngest.Engine(
        client, functions, database=db_path, durability="normal", **options
    ) as first:
        [event_id] = await first.send(inngest.Event(name="go"))
        [run] = await first.runs(event_id)
        for _ in range(500):
            if "b2" in rec.calls:
                break
            await asyncio.sleep(0.01)
        assert "b2" in rec.calls
        assert (await first.run(run.id)).status == "Running"
    # Stopped while b2 was in flight: b2's result was never recorded.
    client2, functions2 = build(rec, None)
    async with inngest.Engine(client2, functions2, database=db_path, durability="normal") as second:
        done = await second.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == ["first", ["a", "b1"], "b2", "last"]
    # Every recorded step ran once; b2 ran again because it was never recorded.
    assert [rec.count(n) for n in ("first", "a", "b1", "b2", "last")] == [1, 1, 1, 2, 1]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_many_concurrent_runs_with_evictions(
    db_path: pathlib.Path, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More runs than the engine keeps suspended: evicted ones replay and still finish."""
    from mainspring.engine import transport

    original = transport.InProcessTransport.__init__

    def small(self: transport.InProcessTransport, *args: Any, **kwargs: Any) -> None:
        kwargs.update(max_live=8, max_live_sync=4)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transport.InProcessTransport, "__init__", small)
    client = inngest.Client(app_id="many")
    rec = Recorder()

    def work(key: str) -> str:
        rec.hit(key)
        return key

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[str]:
            n = ctx.event.data["n"]
            out = [await ctx.step.run(f"s{i}", work, f"{n}-s{i}") for i in range(3)]
            pair = await ctx.group.parallel(
                (
                    lambda: ctx.step.run("p", work, f"{n}-p"),
                    lambda: ctx.step.run("q", work, f"{n}-q"),
                )
            )
            return out + list(pair)

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> list[str]:
            n = ctx.event.data["n"]
            out = [ctx.step.run(f"s{i}", work, f"{n}-s{i}") for i in range(3)]
            pair = ctx.group.parallel(
                (
                    lambda: ctx.step.run("p", work, f"{n}-p"),
                    lambda: ctx.step.run("q", work, f"{n}-q"),
                )
            )
            return out + list(pair)

    async with inngest.Engine(client, [fn], database=db_path, durability="normal") as engine:
        ids = await engine.send([inngest.Event(name="go", data={"n": n}) for n in range(40)])
        runs = [run for event_id in ids for run in await engine.runs(event_id)]
        done = await asyncio.gather(*(engine.wait(run.id, timeout=30) for run in runs))
    assert [d.status for d in done] == ["Completed"] * 40
    for n, d in enumerate(done):
        assert d.output == [f"{n}-s0", f"{n}-s1", f"{n}-s2", f"{n}-p", f"{n}-q"]
    assert len(rec.calls) == 40 * 5
    assert len(set(rec.calls)) == 40 * 5  # no handler ran twice
