"""A finished run leaves no reference cycles behind.

An execution's context, steps and logger point back at it, its root task's context holds
it, and a store unit's after-commit changes are closures over the unit. Unless those
cycles are cut when a run ends, each run leaves tens of objects to Python's cyclic
garbage collector: collections become frequent, and the full ones, over everything
promoted meanwhile, stall the event loop for tens of milliseconds. Reference counting
alone must free a finished run, in process and over HTTP, async and sync.
"""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Iterator
from typing import Any

import pytest

import mainspring
from tests.conftest import EngineFactory


def define(client: mainspring.Client) -> list[mainspring.Function[Any]]:
    @client.create_function(fn_id="async-fn", trigger=mainspring.TriggerEvent(event="go/async"))
    async def async_fn(ctx: mainspring.Context) -> int:
        first = await ctx.step.run("first", lambda: 1)
        both = await ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: 2), lambda: ctx.step.run("b", lambda: 3))
        )
        ctx.logger.info("done")
        return first + sum(both)

    @client.create_function(fn_id="sync-fn", trigger=mainspring.TriggerEvent(event="go/sync"))
    def sync_fn(ctx: mainspring.ContextSync) -> int:
        first = ctx.step.run("first", lambda: 1)
        both = ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: 2), lambda: ctx.step.run("b", lambda: 3))
        )
        return first + sum(both)

    return [async_fn, sync_fn]


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the collector finds unreachable while the test runs (it keeps it to look at)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()


async def run_all(engine: mainspring.Engine, name: str, count: int) -> None:
    ids = []
    for n in range(count):
        ids += await engine.send(mainspring.Event(name=name, data={"n": n}))
    runs = [run for event_id in ids for run in await engine.runs(event_id)]
    done = await asyncio.gather(*(engine.wait(run.id, timeout=10) for run in runs))
    assert [run.output for run in done] == [6] * count


def garbage_of_runs(garbage: list[Any]) -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(obj).__qualname__ for obj in garbage)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_finished_run_leaves_no_cycles(
    make_engine: EngineFactory, saved_garbage: list[Any], kind: str, transport_kind: str
) -> None:
    """Both transports (``make_engine``): in process, and over HTTP through the serve
    handler, whose kept executions are the same. (Over HTTP the test's in-memory httpx
    transport leaves cycles of its own; the engine's default client is aiohttp's.)"""
    client = mainspring.Client(app_id="garbage", is_production=False)
    async with make_engine(client, define(client)) as engine:
        await run_all(engine, f"go/{kind}", 1)  # warm: caches and lazy imports
        gc.collect()
        saved_garbage.clear()
        await run_all(engine, f"go/{kind}", 20)
        await asyncio.sleep(0.05)  # the last runs' executions are dropped
        found = garbage_of_runs(saved_garbage)
    assert found["Execution"] == 0, found.most_common(12)
    assert found["Unit"] == 0, found.most_common(12)
    if transport_kind == "inprocess":
        assert sum(found.values()) < 20, found.most_common(12)
