"""A run's step history: every step in order, failed attempts included."""

from __future__ import annotations

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def test_history_lists_steps_attempts_and_waits(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="history")
    failures = [1]

    def flaky() -> str:
        if failures:
            failures.pop()
            raise ValueError("first try fails")
        return "ok"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.run("one", lambda: 1)
        await ctx.step.run("flaky", flaky)
        await ctx.step.sleep("nap", 10)
        await ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: "A"), lambda: ctx.step.run("b", lambda: "B"))
        )

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    summary = [
        (h.user_id, h.op, h.attempt, h.output, h.error and h.error["message"]) for h in history
    ]
    assert summary[:4] == [
        ("one", "StepRun", 0, 1, None),
        ("flaky", "StepError", 0, None, "first try fails"),
        ("flaky", "StepRun", 1, "ok", None),
        ("nap", "Sleep", 0, None, None),
    ]
    assert sorted(summary[4:]) == [("a", "StepRun", 0, "A", None), ("b", "StepRun", 0, "B", None)]
    for entry in history:
        assert entry.started_at is not None
        assert entry.started_at <= entry.ended_at
    nap = history[3]
    assert nap.started_at is not None
    assert nap.ended_at - nap.started_at >= 10
