"""Code that changes under a run in flight (issue: deploys). Each test runs a first
version of a function until a step is waiting to be retried, stops the engine, and starts
it again on the same database with a second version, as a deploy does.

The rules (the reference's): a step id the code no longer reaches is a step that no
longer exists, and the run goes on; an id the run has not seen is a new step with a fresh
retry budget.
"""

from __future__ import annotations

from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_step

#: Long enough that a retry is still waiting when the first version stops.
BACKOFF = 60.0


def fails(name: str) -> Any:
    def step() -> str:
        raise RuntimeError(f"{name} fails in the first version")

    return step


async def first_version_until_a_retry(
    make_engine: EngineFactory,
    fn: inngest.Function[Any],
    client: inngest.Client,
    clock: inngest.ManualClock,
    failing: str,
) -> str:
    async with make_engine(client, [fn], clock=clock, retry_backoff=BACKOFF) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_step(engine, run.id, failing)
    return run.id


def dropped(history: list[inngest.StepAttempt], user_id: str) -> list[inngest.StepAttempt]:
    return [h for h in history if h.op == "StepDropped" and h.user_id == user_id]


@pytest.mark.parametrize("change", ["renamed", "removed"])
async def test_a_group_member_waiting_to_retry_that_the_new_code_lacks_is_dropped(
    make_engine: EngineFactory, change: str
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()

    @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def v1(ctx: inngest.Context) -> object:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p1", lambda: "one"), lambda: ctx.step.run("p2", fails("p2")))
        )

    run_id = await first_version_until_a_retry(make_engine, v1, client, clock, "p2")

    client = inngest.Client(app_id="deploys")
    if change == "renamed":

        @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            return await ctx.group.parallel(
                (
                    lambda: ctx.step.run("p1", lambda: "one"),
                    lambda: ctx.step.run("p2x", lambda: "new"),
                )
            )

    else:

        @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            return await ctx.group.parallel((lambda: ctx.step.run("p1", lambda: "one"),))

    async with make_engine(client, [v2], clock=clock, retry_backoff=BACKOFF) as engine:
        clock.advance(BACKOFF + 1)  # the retry of p2 is due
        run = await engine.wait(run_id, timeout=5)
        history = await engine.history(run_id)
    assert run.status == "Completed", run.error
    assert run.output == (["one", "new"] if change == "renamed" else ["one"])
    [drop] = dropped(history, "p2")
    assert drop.error is not None
    assert "'p2' is no longer reached by the function's code" in drop.error["message"]
    # The dropped step's result was never recorded; p1's stood.
    assert [h.user_id for h in history if h.op == "StepRun"] == (
        ["p1", "p2x"] if change == "renamed" else ["p1"]
    )


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_renamed_step_starts_with_a_fresh_retry_budget(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    attempts: list[int] = []

    if flavour == "async":

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v1(ctx: inngest.Context) -> object:
            await ctx.step.run("before", lambda: 1)
            return await ctx.step.run("charge", fails("charge"))

    else:

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def v1(ctx: inngest.ContextSync) -> object:
            ctx.step.run("before", lambda: 1)
            return ctx.step.run("charge", fails("charge"))

    run_id = await first_version_until_a_retry(make_engine, v1, client, clock, "charge")

    client = inngest.Client(app_id="deploys")

    if flavour == "async":

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            await ctx.step.run("before", lambda: 1)

            def charge() -> str:
                attempts.append(ctx.attempt)
                return "charged once"

            return await ctx.step.run("charge-v2", charge)

    else:

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def v2(ctx: inngest.ContextSync) -> object:
            ctx.step.run("before", lambda: 1)

            def charge() -> str:
                attempts.append(ctx.attempt)
                return "charged once"

            return ctx.step.run("charge-v2", charge)

    async with make_engine(client, [v2], clock=clock, retry_backoff=BACKOFF) as engine:
        clock.advance(BACKOFF + 1)
        run = await engine.wait(run_id, timeout=5)
        history = await engine.history(run_id)
    assert run.status == "Completed", run.error
    assert run.output == "charged once"
    assert attempts == [0]  # not attempt 1 of its predecessor's budget
    assert len(dropped(history, "charge")) == 1
