"""The replay core answering hand-built call requests, as an executor would send them.

Each test builds requests the way protocol §2.3 describes (memo map, stack, target step,
``disable_immediate_execution``) and checks the answer against §4, §5 and §7.1 and the
reference SDK's transcript (sdk-api §2.4). A fresh :class:`Execution` per request is a
replay from the top, which is what an HTTP SDK does on every call.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
import pytest

import mainspring as inngest
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    Failure,
    Ops,
)
from mainspring.protocol.opcodes import Opcode
from mainspring.protocol.step_ids import hash_step_id
from mainspring.sdk.execution import Execution

client = inngest.Client(app_id="core")
calls: list[str] = []


def record(name: str) -> str:
    calls.append(name)
    return name.upper()


@client.create_function(fn_id="mixed", trigger=inngest.TriggerEvent(event="go"))
async def mixed(ctx: inngest.Context) -> dict[str, object]:
    out = await ctx.group.parallel(
        (
            lambda: ctx.step.run("a", record, "a"),
            lambda: ctx.step.run("b", record, "b"),
            lambda: ctx.step.sleep("zz", 60_000),
        )
    )
    after = await ctx.step.run("c", record, "c")
    return {"out": list(out), "after": after}


@client.create_function(fn_id="mixed-sync", trigger=inngest.TriggerEvent(event="go"))
def mixed_sync(ctx: inngest.ContextSync) -> dict[str, object]:
    out = ctx.group.parallel(
        (
            lambda: ctx.step.run("a", record, "a"),
            lambda: ctx.step.run("b", record, "b"),
            lambda: ctx.step.sleep("zz", 60_000),
        )
    )
    after = ctx.step.run("c", record, "c")
    return {"out": list(out), "after": after}


A, B, ZZ, C = (hash_step_id(s) for s in ("a", "b", "zz", "c"))


async def call(
    function: inngest.Function[Any],
    steps: dict[str, Any] | None = None,
    *,
    target: str | None = None,
    die: bool = False,
    attempt: int = 0,
    max_attempts: int = 5,
    report_completion: bool = False,
) -> CallResponse:
    steps = steps or {}
    request = CallRequest(
        fn_id=function.id,
        event={"name": "go", "data": {}},
        events=[{"name": "go", "data": {}}],
        steps=steps,
        ctx=CallContext(
            run_id="run-1",
            attempt=attempt,
            max_attempts=max_attempts,
            stack=list(steps),
            disable_immediate_execution=die,
        ),
        step_id=target,
    )
    execution = Execution(function, client, request, report_completion=report_completion)
    try:
        response = await execution.call(request)
    finally:
        execution.abandon()
        await asyncio.sleep(0)  # let cancelled tasks unwind
    assert response is not None
    return response


def ops(response: CallResponse) -> list[tuple[str, str]]:
    assert isinstance(response, Ops), response
    return [(op.op.value, op.id) for op in response.ops]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def test_step_ids_hash_like_every_sdk() -> None:
    assert hash_step_id("my-step-id") == "e7d8a2f140845095749d60246ff1110c9d01d76a"
    assert hash_step_id("a", 1) == hash_step_id("a:1")


@pytest.mark.parametrize("function", [mixed, mixed_sync], ids=["async", "sync"])
async def test_transcript_of_a_group_with_a_sleep(function: inngest.Function[Any]) -> None:
    # 1: nothing memoized: plan a and b, report the sleep as itself.
    first = await call(function)
    assert ops(first) == [("StepPlanned", A), ("StepPlanned", B), ("Sleep", ZZ)]
    assert isinstance(first, Ops)
    assert first.ops[2].opts == {"duration": "1m"}
    assert calls == []

    # 2: targeted at a: only a's handler runs.
    second = await call(function, target=A, die=True)
    assert ops(second) == [("StepRun", A)]
    assert isinstance(second, Ops)
    assert orjson.loads(second.ops[0].data or b"") == "A"
    assert calls == ["a"]

    # 3: a memoized: the rediscovery re-plans only the missing members.
    third = await call(function, {A: {"data": "A"}})
    assert ops(third) == [("StepPlanned", B), ("Sleep", ZZ)]

    memos = {A: {"data": "A"}, B: {"data": "B"}, ZZ: None}
    # 4: group done, immediate execution disabled: c is planned, not run.
    assert ops(await call(function, memos, die=True)) == [("StepPlanned", C)]
    # 5: allowed: c runs at once.
    fifth = await call(function, memos)
    assert ops(fifth) == [("StepRun", C)]
    assert calls == ["a", "c"]

    # 6: everything memoized: the function returns.
    done = await call(function, {**memos, C: {"data": "C"}})
    assert isinstance(done, Complete)
    assert orjson.loads(done.output) == {"out": ["A", "B", None], "after": "C"}

    # 7: b failed for good: StepError escapes the group and fails the function.
    failed = await call(
        function, {A: {"data": "A"}, B: {"error": {"name": "ValueError", "message": "boom"}}}
    )
    assert isinstance(failed, Failure)
    assert not failed.retriable
    assert failed.error.code == "step_errored"
    assert (failed.error.name, failed.error.message) == ("ValueError", "boom")
    assert calls == ["a", "c"]


async def test_race_mode_tags_every_member() -> None:
    @client.create_function(fn_id="race", trigger=inngest.TriggerEvent(event="go"))
    async def race(ctx: inngest.Context) -> None:
        await ctx.group.parallel(
            (lambda: ctx.step.run("a", record, "a"), lambda: ctx.step.run("b", record, "b")),
            parallel_mode=inngest.ParallelMode.RACE,
        )

    response = await call(race)
    assert isinstance(response, Ops)
    assert [op.opts for op in response.ops] == [{"parallelMode": "race"}] * 2


async def test_step_error_then_step_failed_on_the_last_attempt() -> None:
    @client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event="go"))
    async def flaky(ctx: inngest.Context) -> None:
        await ctx.step.run("x", lambda: 1 / 0)

    early = await call(flaky, attempt=0, max_attempts=3)
    assert ops(early) == [("StepError", hash_step_id("x"))]
    last = await call(flaky, attempt=2, max_attempts=3)
    assert ops(last) == [("StepFailed", hash_step_id("x"))]
    assert isinstance(last, Ops)
    assert last.ops[0].error is not None
    assert last.ops[0].error.name == "ZeroDivisionError"


async def test_targeting_a_step_the_function_never_reaches() -> None:
    response = await call(mixed, target=hash_step_id("nope"))
    assert isinstance(response, Failure)
    assert not response.retriable
    assert response.error.code == "step_not_found"
    assert "a, b, zz" in response.error.message


async def test_user_code_cannot_swallow_the_suspension() -> None:
    swallowed: list[str] = []

    @client.create_function(fn_id="greedy", trigger=inngest.TriggerEvent(event="go"))
    async def greedy(ctx: inngest.Context) -> str:
        try:
            await ctx.step.run("a", record, "a")
            await ctx.step.run("b", record, "b")
        except Exception as exc:  # a user's catch-all must not eat the control flow
            swallowed.append(repr(exc))
        return "done"

    assert ops(await call(greedy)) == [("StepRun", A)]
    assert ops(await call(greedy, {A: {"data": "A"}})) == [("StepRun", B)]
    assert swallowed == []


async def test_memoized_steps_resolve_in_stack_order() -> None:
    order: list[str] = []

    @client.create_function(fn_id="order", trigger=inngest.TriggerEvent(event="go"))
    async def ordered(ctx: inngest.Context) -> list[str]:
        async def branch(name: str) -> str:
            value = await ctx.step.run(name, record, name)
            order.append(name)
            return value

        _done, _ = await asyncio.wait(
            [asyncio.ensure_future(branch(n)) for n in ("a", "b", "c")],
            return_when=asyncio.ALL_COMPLETED,
        )
        return order

    # c finished first, then a, then b: the replay hands them out in that order.
    memos = {
        hash_step_id("c"): {"data": "C"},
        hash_step_id("a"): {"data": "A"},
        hash_step_id("b"): {"data": "B"},
    }
    done = await call(ordered, memos)
    assert isinstance(done, Complete)
    assert orjson.loads(done.output) == ["c", "a", "b"]


async def test_a_suspended_execution_resumes_without_replaying() -> None:
    entries: list[int] = []

    @client.create_function(fn_id="live", trigger=inngest.TriggerEvent(event="go"))
    async def live(ctx: inngest.Context) -> int:
        entries.append(1)  # runs once per replay from the top
        total = 0
        for i in range(3):
            total += await ctx.step.run(f"s{i}", functools.partial(int.__add__, i, 1))
        return total

    steps: dict[str, Any] = {}
    stack: list[str] = []

    def request() -> CallRequest:
        return CallRequest(
            fn_id=live.id,
            event={"name": "go", "data": {}},
            events=[],
            steps=steps,
            ctx=CallContext(run_id="r", stack=list(stack)),
        )

    execution = Execution(live, client, request())
    try:
        for _i in range(3):
            response = await execution.call(request())
            assert isinstance(response, Ops)
            [op] = response.ops
            assert op.op is Opcode.STEP_RUN
            steps[op.id] = {"data": orjson.loads(op.data or b"")}
            stack.append(op.id)
            assert execution.accepts(request())
        final = await execution.call(request())
    finally:
        execution.abandon()
    assert isinstance(final, Complete)
    assert orjson.loads(final.output) == 6
    assert entries == [1]


@pytest.mark.parametrize("function", [mixed, mixed_sync], ids=["async", "sync"])
async def test_a_return_right_after_a_step_rides_with_it(function: inngest.Function[Any]) -> None:
    memos = {A: {"data": "A"}, B: {"data": "B"}, ZZ: None}
    response = await call(function, memos, report_completion=True)
    assert ops(response) == [("StepRun", C), ("RunComplete", C)]
    assert isinstance(response, Ops)
    assert orjson.loads(response.ops[1].data or b"") == {"out": ["A", "B", None], "after": "C"}
    # A step followed by another step: only the first is reported (and run).
    calls.clear()
    first = await call(function, report_completion=True)
    assert ops(first) == [("StepPlanned", A), ("StepPlanned", B), ("Sleep", ZZ)]


async def test_a_failure_right_after_a_step_is_left_to_the_next_call() -> None:
    @client.create_function(fn_id="fails-after", trigger=inngest.TriggerEvent(event="go"))
    async def fails_after(ctx: inngest.Context) -> None:
        await ctx.step.run("x", lambda: 1)
        raise RuntimeError("after the step")

    response = await call(fails_after, report_completion=True)
    assert ops(response) == [("StepRun", hash_step_id("x"))]
    replay = await call(fails_after, {hash_step_id("x"): {"data": 1}}, report_completion=True)
    assert isinstance(replay, Failure)
    assert replay.error.message == "after the step"
