"""Step chains: one call runs sequential steps one after another and the executor records
them in the order they ran. Budgets, failures and retries inside a chain, on both
transports."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, log_calls, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


def counting_steps(
    app_id: str, n: int, *, pause: float = 0.0
) -> tuple[inngest.Client, inngest.Function[list[int]], list[int]]:
    client = inngest.Client(app_id=app_id)
    ran: list[int] = []

    async def body(i: int) -> int:
        ran.append(i)
        if pause:
            await asyncio.sleep(pause)
        return i * 10

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[int]:
        return [await ctx.step.run(f"s{i}", body, i) for i in range(n)]

    return client, fn, ran


async def test_a_chain_records_its_steps_in_order(make_engine: EngineFactory) -> None:
    client, fn, ran = counting_steps("chain-order", 30)
    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == [i * 10 for i in range(30)]
    assert ran == list(range(30))  # each step ran once
    assert [h.user_id for h in history] == [f"s{i}" for i in range(30)]
    assert [h.output for h in history] == [i * 10 for i in range(30)]
    assert log.discoveries == 1


async def test_no_chain_budget_records_every_step_on_its_own(make_engine: EngineFactory) -> None:
    client, fn, ran = counting_steps("chain-off", 4)
    async with make_engine(client, [fn], chain_seconds=0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.output == [0, 10, 20, 30]
    assert ran == [0, 1, 2, 3]
    assert log.discoveries >= 4  # a call per step (over HTTP, one more returns the output)


async def test_a_spent_budget_ends_the_chain(make_engine: EngineFactory) -> None:
    # Each step takes 30 ms against a 10 ms budget: every call runs one step.
    client, fn, ran = counting_steps("chain-budget", 3, pause=0.03)
    async with make_engine(client, [fn], chain_seconds=0.01) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.output == [0, 10, 20]
    assert ran == [0, 1, 2]
    assert log.discoveries == 3


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_step_failing_in_a_chain_gets_exactly_its_attempts(
    make_engine: EngineFactory, retries: int
) -> None:
    """The steps before it are recorded with it; its attempts are counted from the call
    that ran it, so it runs retries + 1 times in all."""
    client = inngest.Client(app_id="chain-fail")
    calls = {"ok": 0, "bad": 0}

    def ok() -> str:
        calls["ok"] += 1
        return "fine"

    def bad() -> str:
        calls["bad"] += 1
        raise ValueError("always")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=retries)
    async def fn(ctx: inngest.Context) -> str:
        await ctx.step.run("ok", ok)
        return await ctx.step.run("bad", bad)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Failed"
    assert calls == {"ok": 1, "bad": retries + 1}
    assert history[0].user_id == "ok"
    assert history[0].output == "fine"
    failed = [h for h in history if h.user_id == "bad"]
    assert [h.op for h in failed] == ["StepError"] * retries + ["StepFailed"]
    assert [h.attempt for h in failed] == list(range(retries + 1))


async def test_a_retried_step_then_chains_its_followers(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="chain-retry")
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("once")
        return "ok"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def fn(ctx: inngest.Context) -> list[str]:
        first = await ctx.step.run("flaky", flaky)
        rest = [await ctx.step.run(f"after{i}", lambda: "x") for i in range(3)]
        return [first, *rest]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.output == ["ok", "x", "x", "x"]
    assert len(tries) == 2
    assert [(h.user_id, h.op) for h in history] == [
        ("flaky", "StepError"),
        ("flaky", "StepRun"),
        ("after0", "StepRun"),
        ("after1", "StepRun"),
        ("after2", "StepRun"),
    ]


async def test_chained_steps_keep_their_own_times(make_engine: EngineFactory) -> None:
    client, fn, _ = counting_steps("chain-times", 3, pause=0.004)
    async with make_engine(client, [fn], chain_seconds=1.0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert log.discoveries == 1  # all three in one call
    spans = [(h.started_at, h.ended_at) for h in history]
    assert len(spans) == 3  # the loops below check something
    for start, end in spans:
        assert start is not None
        assert end - start >= 3  # each step's own ~4 ms, not the call's span
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start is not None
        assert end <= start  # one after another
