"""Replay order and wake-ups of the replay core, driven with hand-built call requests.

The memo map and the stack (the order results were saved in) are set by hand, so a replay
can get its memos in another order than the function declared its steps, or miss a step
the stack names. What is checked:

- a sync function hands each step its own memo, whatever the stack order, and counts the
  memos it has handed out: ``ctx.logger`` stays quiet exactly until the last one
  (``Execution.replaying``, fed by the ``_turn`` count of ``step_sync``);
- stack-order replay when the step expected next never comes (``_release_next_turn``).
  Only async functions wait for their turn: a sync function's steps take their memos in
  code order, so no sync path reaches it;
- a sync function's thread that woke from a step and keeps working (longer than the
  core's poll) is not taken for blocked on steps (``block_until_any``'s reset).

Every call runs on its own event loop in a daemon thread with a deadline, so a broken
hand-out (a step waiting for a turn that never comes, a core spinning) fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
from mainspring.protocol.step_ids import hash_step_id
from mainspring.sdk.execution import Execution

T = TypeVar("T")

#: Longest a single test's calls may take before the test counts as hung.
DEADLINE = 10.0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_logger = logging.getLogger("mainspring.tests.sync_replay_order")
_logger.setLevel(logging.DEBUG)
_logger.propagate = False
_logs = _Collect()
_logger.addHandler(_logs)

client = inngest.Client(app_id="replay-order", logger=_logger)
calls: list[str] = []


def record(name: str) -> str:
    calls.append(name)
    return name.upper()


A, B, C, D = (hash_step_id(s) for s in ("a", "b", "c", "d"))
#: A step the stack names that the function (as it is now) never calls.
GONE = hash_step_id("removed-since")


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    _logs.messages.clear()


def run_bounded(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` in a daemon thread; fails the test past ``DEADLINE``."""
    box: dict[str, Any] = {}

    def target() -> None:
        async def wrapped() -> T:
            return await main()

        try:
            box["value"] = asyncio.run(wrapped())
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, name="replay-order-test", daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        pytest.fail(f"the execution did not answer within {DEADLINE} s (hung)")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def request(
    function: inngest.Function[Any], steps: dict[str, Any], *, run_id: str = "run-1"
) -> CallRequest:
    """A discovery request; the stack is the memo map's order (the order of saving)."""
    return CallRequest(
        fn_id=function.id,
        event={"name": "go", "data": {}},
        events=[{"name": "go", "data": {}}],
        steps=dict(steps),
        ctx=CallContext(run_id=run_id, stack=list(steps)),
    )


def call(
    function: inngest.Function[Any],
    steps: dict[str, Any],
    *,
    report_completion: bool = False,
) -> CallResponse:
    """One request answered by a fresh execution: a replay from the top."""

    async def main() -> CallResponse:
        req = request(function, steps)
        execution = Execution(function, client, req, report_completion=report_completion)
        try:
            response = await execution.call(req)
        finally:
            execution.abandon()
            await asyncio.sleep(0)
        assert response is not None
        return response

    return run_bounded(main)


def ops(response: CallResponse) -> list[tuple[str, str]]:
    assert isinstance(response, Ops), response
    return [(op.op.value, op.id) for op in response.ops]


def output(response: CallResponse) -> Any:
    assert isinstance(response, Complete), response
    return orjson.loads(response.output)


# -- sync: memos out of declaration order, counted as they are handed out ---------------


@client.create_function(fn_id="sync-group", trigger=inngest.TriggerEvent(event="go"))
def sync_group(ctx: inngest.ContextSync) -> dict[str, object]:
    ctx.logger.info("start")

    def branch(name: str) -> Callable[[], str]:
        def run() -> str:
            value = ctx.step.run(name, record, name)
            ctx.logger.info(f"{name} done")
            return value

        return run

    out = ctx.group.parallel((branch("a"), branch("b")))
    ctx.logger.info("group done")
    after = ctx.step.run("c", record, "c")
    ctx.logger.info("c done")
    return {"out": list(out), "after": after}


def test_sync_group_gets_each_memo_whatever_the_stack_order() -> None:
    # b finished before a: the stack is [b, a]; the group declares (a, b).
    response = call(sync_group, {B: {"data": "from-b"}, A: {"data": "from-a"}})
    assert ops(response) == [("StepRun", C)]
    assert calls == ["c"]  # a and b came from their memos
    # Two memos: quiet through the first hand-out, talking once the second is out.
    assert _logs.messages == ["b done", "group done"]


def test_sync_full_replay_out_of_order_is_quiet_until_the_last_memo() -> None:
    memos = {B: {"data": "from-b"}, C: {"data": "from-c"}, A: {"data": "from-a"}}
    done = call(sync_group, memos)
    assert output(done) == {"out": ["from-a", "from-b"], "after": "from-c"}
    assert calls == []
    assert _logs.messages == ["c done"]


def test_sync_replay_with_no_memo_logs_everything() -> None:
    response = call(sync_group, {})
    assert ops(response) == [("StepPlanned", A), ("StepPlanned", B)]
    assert _logs.messages == ["start"]


@client.create_function(fn_id="sync-line", trigger=inngest.TriggerEvent(event="go"))
def sync_line(ctx: inngest.ContextSync) -> list[str]:
    seen = []
    for name in ("a", "b", "c"):
        seen.append(ctx.step.run(name, record, name))
        ctx.logger.info(f"{name} done")
    return seen


def test_sync_steps_in_a_row_count_one_memo_each() -> None:
    memos = {A: {"data": 1}, B: {"data": 2}, C: {"data": 3}}
    assert output(call(sync_line, memos)) == [1, 2, 3]
    assert _logs.messages == ["c done"]
    _logs.messages.clear()
    # Two of three memoized: the second hand-out ends the replay; c runs now.
    assert ops(call(sync_line, {A: {"data": 1}, B: {"data": 2}})) == [("StepRun", C)]
    assert _logs.messages == ["b done"]


# -- async: the step expected next never comes --------------------------------------------


@client.create_function(fn_id="async-gather", trigger=inngest.TriggerEvent(event="go"))
async def async_gather(ctx: inngest.Context) -> list[str]:
    order: list[str] = []

    async def branch(name: str) -> None:
        order.append(await ctx.step.run(name, record, name))

    await asyncio.gather(*(branch(name) for name in ("a", "b", "c")))
    ctx.logger.info("after gather")
    return order


def test_async_replay_moves_past_a_step_the_function_no_longer_calls() -> None:
    # The first saved step is gone from the code; then c, a, b finished in that order.
    memos = {
        GONE: {"data": "old"},
        C: {"data": "C"},
        A: {"data": "A"},
        B: {"data": "B"},
    }
    done = call(async_gather, memos)
    # The earliest waiting step is released first, then the rest in stack order.
    assert output(done) == ["C", "A", "B"]
    assert calls == []
    # Every memo the stack names is accounted for: the replay is over after the gather.
    assert _logs.messages == ["after gather"]


def test_async_replay_moves_past_a_missing_step_in_the_middle() -> None:
    memos = {
        B: {"data": "B"},
        GONE: {"data": "old"},
        C: {"data": "C"},
        A: {"data": "A"},
    }
    assert output(call(async_gather, memos)) == ["B", "C", "A"]
    assert _logs.messages == ["after gather"]


@client.create_function(fn_id="async-first-then-gather", trigger=inngest.TriggerEvent(event="go"))
async def async_first_then_gather(ctx: inngest.Context) -> list[str]:
    order = [await ctx.step.run("d", record, "d")]

    async def branch(name: str) -> None:
        order.append(await ctx.step.run(name, record, name))

    await asyncio.gather(*(branch(name) for name in ("a", "b", "c")))
    return order


def test_async_chain_moves_past_a_step_the_function_no_longer_calls() -> None:
    # d is new (it runs now), the group after it replays from memos saved in another order,
    # behind one the code no longer has: the chained call still reaches the return.
    memos = {GONE: {"data": "old"}, B: {"data": "B"}, C: {"data": "C"}, A: {"data": "A"}}
    response = call(async_first_then_gather, memos, report_completion=True)
    assert ops(response) == [("StepRun", D), ("RunComplete", D)]
    assert isinstance(response, Ops)
    assert orjson.loads(response.ops[1].data or b"") == ["D", "B", "C", "A"]
    assert calls == ["d"]


# -- sync: a thread that woke from a step and keeps working --------------------------------

#: Longer than the core's poll (``_POLL_SECONDS``), so the core looks while it works.
BUSY_SECONDS = 0.3


@client.create_function(fn_id="sync-slow-after-step", trigger=inngest.TriggerEvent(event="go"))
def sync_slow_after_step(ctx: inngest.ContextSync) -> str:
    first = ctx.step.run("a", record, "a")
    time.sleep(BUSY_SECONDS)
    return first + ctx.step.run("b", record, "b")


def test_a_kept_sync_execution_that_works_after_a_result_is_not_taken_for_blocked() -> None:
    async def main() -> list[CallResponse | None]:
        steps: dict[str, Any] = {}
        execution = Execution(sync_slow_after_step, client, request(sync_slow_after_step, steps))
        try:
            first = await execution.call(request(sync_slow_after_step, steps))
            steps[A] = {"data": "A"}
            # The kept execution hands a's result to the blocked thread, which then works
            # for BUSY_SECONDS before it reaches b.
            second = await execution.call(request(sync_slow_after_step, steps))
            steps[B] = {"data": "B"}
            third = await execution.call(request(sync_slow_after_step, steps))
        finally:
            execution.abandon()
        return [first, second, third]

    first, second, third = run_bounded(main)
    assert first is not None
    assert ops(first) == [("StepRun", A)]
    # Taken for blocked while it worked, the core would answer a DeadlockError here.
    assert second is not None
    assert ops(second) == [("StepRun", B)]
    assert third is not None
    assert output(third) == "AB"
    assert calls == ["a", "b"]


@client.create_function(fn_id="sync-slow-return", trigger=inngest.TriggerEvent(event="go"))
def sync_slow_return(ctx: inngest.ContextSync) -> str:
    value = ctx.step.run("a", record, "a")
    time.sleep(BUSY_SECONDS)
    return value


def test_a_chained_sync_step_then_slow_code_reports_the_return() -> None:
    response = call(sync_slow_return, {}, report_completion=True)
    assert not isinstance(response, Failure), response
    assert ops(response) == [("StepRun", A), ("RunComplete", A)]
    assert isinstance(response, Ops)
    assert orjson.loads(response.ops[1].data or b"") == "A"
