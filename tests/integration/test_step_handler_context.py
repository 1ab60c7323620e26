"""Where a step handler runs in an async function: in the step's context (a copy of the
function body's, where it called the step), whether the handler is a plain function, a
plain function that returns an awaitable, or a coroutine function. What the body set is
seen there; what the handler sets stays there; a step called from inside a handler is
refused as nested. Plain handlers are called without a task of their own
(``Execution._run_handler``), so these are checked for each kind."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, run_to_end

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def plain() -> str:
    seen = WHO.get()
    WHO.set("plain handler")
    return seen


async def coroutine_function() -> str:
    await asyncio.sleep(0)
    seen = WHO.get()
    WHO.set("coroutine handler")
    return seen


async def later(value: str) -> str:
    await asyncio.sleep(0.001)
    return value + ", " + WHO.get()


def returns_coroutine() -> Any:
    WHO.set("returns a coroutine")  # set before its coroutine runs, in the same context
    return later("awaited")


def returns_future() -> Any:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.001, future.set_result, "future")
    return future


async def test_each_kind_of_handler_sees_the_body_and_keeps_its_own_changes(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="handlers")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[str]:
        WHO.set("body")
        return [
            await ctx.step.run("plain", plain),
            await ctx.step.run("coroutine", coroutine_function),
            await ctx.step.run("returns-coroutine", returns_coroutine),
            await ctx.step.run("returns-future", returns_future),
            WHO.get(),  # no handler's change reached the body
        ]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == ["body", "body", "awaited, returns a coroutine", "future", "body"]


async def test_in_a_plan_each_handler_sees_its_branch_and_keeps_its_own_changes(
    make_engine: EngineFactory,
) -> None:
    """A plan's steps run side by side in one call, each in a task of its own that runs in
    the step's context (``Execution._start_step``): the same rules as a lone step's."""
    client = inngest.Client(app_id="handlers")
    handlers = [plain, coroutine_function, returns_coroutine, returns_future]

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[Any]:
        async def branch(i: int) -> Any:
            WHO.set(f"branch {i}")
            return [await ctx.step.run(f"s{i}", handlers[i]), WHO.get()]

        WHO.set("body")
        got = await ctx.group.parallel(
            tuple(functools.partial(branch, i) for i in range(len(handlers)))
        )
        return [*got, WHO.get()]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [
        ["branch 0", "branch 0"],
        ["branch 1", "branch 1"],
        ["awaited, returns a coroutine", "branch 2"],
        ["future", "branch 3"],
        "body",
    ]


async def test_a_step_called_inside_a_plain_handler_is_refused_as_nested(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="handlers")

    @client.create_function(fn_id="nested", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> str:
        return await ctx.step.run("outer", lambda: ctx.step.run("inner", plain))

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert "inner" in str(run.error)
    assert "outer" in str(run.error)


@pytest.mark.parametrize("shape", ["lone", "plan", "sync"])
async def test_a_handler_that_raises_cancelled_error_fails_its_step(
    make_engine: EngineFactory, shape: str
) -> None:
    """``asyncio.CancelledError`` out of a handler (an operation inside it was cancelled)
    is the step failing, retried as any error; before, it ended the call with no answer
    and the run waited for ever."""
    client = inngest.Client(app_id="handlers")
    calls: list[str] = []

    def flaky() -> str:
        calls.append("flaky")
        if len(calls) == 1:
            raise asyncio.CancelledError()
        return "second time"

    def sibling() -> str:
        calls.append("sibling")
        return "sibling"

    if shape == "sync":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
        def fn_sync(ctx: inngest.ContextSync) -> Any:
            return ctx.step.run("flaky", flaky)

        fn: inngest.Function[Any] = fn_sync
    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
        async def fn_async(ctx: inngest.Context) -> Any:
            if shape == "lone":
                return await ctx.step.run("flaky", flaky)
            return list(
                await ctx.group.parallel(
                    (
                        functools.partial(ctx.step.run, "flaky", flaky),
                        functools.partial(ctx.step.run, "sibling", sibling),
                    )
                )
            )

        fn = fn_async

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == (["second time", "sibling"] if shape == "plan" else "second time")
    assert calls.count("flaky") == 2
    assert calls.count("sibling") == (shape == "plan")
    [failed] = [h for h in history if h.user_id == "flaky" and h.op == "StepError"]
    assert failed.error is not None
    assert failed.error["name"] == "CancelledError"
    assert "raised asyncio.CancelledError" in failed.error["message"]
