"""A kept execution must not go on from results whose answer never reached the executor.

A chain hands each step's result to the function as soon as the step ran; the executor
records them only when the answer arrives. If the answer is lost (a killed server, a
timeout), the next call carries the same stack, and the kept execution must refuse it so
that a fresh one replays from the memos the request carries."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

import mainspring as inngest
from mainspring.protocol.messages import CallContext, CallRequest, Ops
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.live import LiveExecutions

client = inngest.Client(app_id="lost")
counter = itertools.count()
ran: list[str] = []


def tick(name: str) -> str:
    value = f"{name}{next(counter)}"
    ran.append(value)
    return value


@client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="go"))
async def three(ctx: inngest.Context) -> list[str]:
    return [await ctx.step.run(n, tick, n) for n in ("a", "b", "c")]


def request(steps: dict[str, Any], *, target: str | None = None) -> CallRequest:
    event = {"name": "go", "data": {}, "id": "e", "ts": 1}
    return CallRequest(
        fn_id=three.id,
        event=event,
        events=[event],
        steps=steps,
        ctx=CallContext(run_id="r", attempt=0, max_attempts=3, stack=list(steps)),
        step_id=target,
    )


async def test_a_lost_chain_answer_is_replayed_not_continued() -> None:
    live = LiveExecutions(client)
    first = await live.call(three, request({}), report_completion=True, chain_seconds=10.0)
    assert isinstance(first, Ops)
    assert [op.op for op in first.ops] == [Opcode.STEP_RUN] * 3 + [Opcode.RUN_COMPLETE]
    # Nothing recorded that answer; the function returned, so the execution is gone anyway.
    # Stop the chain before the end instead: a budget of 0 s runs one step per call.
    ran.clear()
    live = LiveExecutions(client)
    answered = await live.call(three, request({}), report_completion=True, chain_seconds=1e-9)
    assert isinstance(answered, Ops)
    [a] = answered.ops
    assert a.op is Opcode.STEP_RUN
    # The answer [a] is lost: the executor calls again with nothing recorded.
    again = await live.call(three, request({}), report_completion=True, chain_seconds=1e-9)
    assert isinstance(again, Ops)
    [a2] = again.ops
    # The step ran again (it was never recorded), and the kept execution did not go on to
    # "b" from the lost result.
    assert a2.id == a.id
    assert ran == ["a" + ran[0][1:], "a" + ran[1][1:]]
    # Now the executor records a2 and the run goes on from a2's value, without a replay.
    memo = {a2.id: {"data": orjson.loads(a2.data or b"null")}}
    rest = await live.call(three, request(memo), report_completion=True, chain_seconds=1e-9)
    assert isinstance(rest, Ops)
    [b] = rest.ops
    assert b.user_id == "b"
    assert len(ran) == 3  # a, a again, then b


async def test_a_recorded_chain_answer_lets_the_execution_go_on() -> None:
    ran.clear()
    live = LiveExecutions(client)
    answered = await live.call(three, request({}), report_completion=True, chain_seconds=1e-9)
    assert isinstance(answered, Ops)
    [a] = answered.ops
    memo = {a.id: {"data": orjson.loads(a.data or b"null")}}
    rest = await live.call(three, request(memo), report_completion=True, chain_seconds=1e-9)
    assert isinstance(rest, Ops)
    assert [op.user_id for op in rest.ops] == ["b"]
    assert [name[0] for name in ran] == ["a", "b"]  # no replay re-ran a
