"""step.invoke on the embedded engine (protocol §8.5)."""

from __future__ import annotations

import asyncio

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, log_calls, run_to_end, until_idle, wait_for_pauses

pytestmark = pytest.mark.backends("sqlite", "postgres")


def build(client: inngest.Client) -> list[inngest.Function[object]]:
    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never/sent"))
    async def child(ctx: inngest.Context) -> object:
        if ctx.event.data.get("fail"):
            raise inngest.NonRetriableError("child refused")
        if ctx.event.data.get("slow"):
            await ctx.step.sleep("long", 60_000)
        doubled = await ctx.step.run("double", lambda: ctx.event.data["n"] * 2)
        return {"doubled": doubled}

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> object:
        try:
            return await ctx.step.invoke(
                "call-child", function=child, data=dict(ctx.event.data), timeout=30_000
            )
        except inngest.StepError as err:
            return {"caught": err.name, "message": err.message}

    return [child, parent]


async def test_invoke_returns_the_child_output(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="inv")
    async with make_engine(client, build(client)) as engine:
        run = await run_to_end(engine, inngest.Event(name="go", data={"n": 21}))
    assert run.status == "Completed", run.error
    assert run.output == {"doubled": 42}


async def test_child_failure_is_a_step_error_in_the_parent(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="inv")
    async with make_engine(client, build(client)) as engine:
        run = await run_to_end(engine, inngest.Event(name="go", data={"n": 1, "fail": True}))
    assert run.status == "Completed", run.error
    assert run.output == {"caught": "NonRetriableError", "message": "child refused"}


async def test_invoke_timeout(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="inv")
    clock = inngest.ManualClock()
    async with make_engine(client, build(client), clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go", data={"n": 1, "slow": True}))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
        clock.advance(31)  # past the invoke timeout, before the child's 60 s sleep ends
        done = await engine.wait(run.id, timeout=5)
        [step] = [h for h in await engine.history(run.id) if h.op == "InvokeFunction"]
    assert done.status == "Completed", done.error
    assert done.output == {
        "caught": "InngestInvokeTimeoutError",
        "message": "Timed out waiting for invoked function to complete",
    }
    # The memo the engine wrote has the reference's shape, with a null stack.
    assert step.error == {
        "name": "InngestInvokeTimeoutError",
        "message": "Timed out waiting for invoked function to complete",
        "stack": None,
        "error": "Timed out waiting for invoked function to complete",
    }


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_invoking_an_unknown_function_fails_clearly(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="inv")

    if flavour == "async":

        @client.create_function(fn_id="p", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> object:
            return await ctx.step.invoke_by_id("call", function_id="nope")

    else:

        @client.create_function(fn_id="p", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> object:
            return ctx.step.invoke_by_id("call", function_id="nope")

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["message"] == "could not find function with ID: inv-nope"


async def test_function_finished_can_trigger_another_function(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="fin")
    seen: list[object] = []

    @client.create_function(fn_id="work", trigger=inngest.TriggerEvent(event="go"))
    async def work(ctx: inngest.Context) -> int:
        return 7

    @client.create_function(
        fn_id="audit",
        trigger=inngest.TriggerEvent(
            event="inngest/function.finished", expression="event.data.function_id == 'fin-work'"
        ),
    )
    async def audit(ctx: inngest.Context) -> None:
        seen.append(ctx.event.data["result"])

    async with make_engine(client, [work, audit]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        await until_idle(engine)  # the listener ran, and nothing runs it again
    assert run.status == "Completed"
    assert seen == [7]


async def test_an_invoke_re_reported_in_a_race_group_starts_one_child(
    make_engine: EngineFactory,
) -> None:
    """In a race group the executor calls the function again as each branch's step ends,
    so a pending invoke is reported again: it must not start a second child."""
    client = inngest.Client(app_id="inv")
    children: set[str] = set()

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never/sent"))
    async def child(ctx: inngest.Context) -> object:
        children.add(ctx.run_id)
        await ctx.step.sleep("long", 60_000)
        return "child done"

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> object:
        return await ctx.group.parallel(
            (
                lambda: ctx.step.invoke("call-child", function=child, timeout=120_000),
                lambda: ctx.step.run("quick", lambda: "quick done"),
            ),
            parallel_mode=inngest.ParallelMode.RACE,
        )

    clock = inngest.ManualClock()
    async with make_engine(client, [child, parent], clock=clock) as engine:
        log = log_calls(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        # The quick branch ran (a targeted call), then the function was called again (a
        # discovery after it) with the invoke still pending.
        for _ in range(500):
            targeted = [i for i, step in enumerate(log.calls) if step is not None]
            if targeted and None in log.calls[targeted[0] + 1 :]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"calls: {log.calls}")
        await wait_for_pauses(engine, run.id)
        clock.advance(61)
        done = await engine.wait(run.id, timeout=5)
        await until_idle(engine)
    assert done.status == "Completed", done.error
    assert done.output == ["child done", "quick done"]
    assert len(children) == 1, children


async def test_a_race_group_goes_on_when_an_invoke_of_an_unknown_function_fails(
    make_engine: EngineFactory,
) -> None:
    """The invoke's error is recorded at once; in a race group the function is called with
    it without waiting for the group's other branch (a 60 s sleep here)."""
    client = inngest.Client(app_id="inv")

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> object:
        try:
            await ctx.group.parallel(
                (
                    lambda: ctx.step.invoke_by_id("call", function_id="nope"),
                    lambda: ctx.step.sleep("long", 60_000),
                ),
                parallel_mode=inngest.ParallelMode.RACE,
            )
        except inngest.StepError as err:
            return {"caught": err.message}
        return "not raised"

    clock = inngest.ManualClock()  # never advanced: the sleep never ends
    async with make_engine(client, [parent], clock=clock) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
    assert run.status == "Completed", run.error
    assert run.output == {"caught": "could not find function with ID: inv-nope"}
