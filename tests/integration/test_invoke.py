"""step.invoke on the embedded engine (protocol §8.5)."""

from __future__ import annotations

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, run_to_end, until_idle, wait_for_pauses


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
