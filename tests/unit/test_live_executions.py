"""What LiveExecutions keeps between calls, and for how long."""

from __future__ import annotations

import asyncio
from typing import Any

import mainspring as inngest
from mainspring.protocol.messages import CallContext, CallRequest, Ops
from mainspring.sdk.execution import Execution
from mainspring.sdk.live import LiveExecutions

client = inngest.Client(app_id="live")


@client.create_function(fn_id="two", trigger=inngest.TriggerEvent(event="go"))
async def two(ctx: inngest.Context) -> list[str]:
    return [await ctx.step.run(n, lambda n=n: n) for n in ("a", "b")]


def request(run_id: str, *, use_api: bool = False) -> CallRequest:
    event: dict[str, Any] = {"name": "go", "data": {}, "id": "e", "ts": 1}
    return CallRequest(
        fn_id=two.id,
        event=event,
        events=[event],
        steps={},
        ctx=CallContext(run_id=run_id, attempt=0, max_attempts=1, stack=[], use_api=use_api),
    )


async def first_step(live: LiveExecutions, run_id: str, *, keep: bool = True) -> None:
    answer = await live.call(
        two, request(run_id), report_completion=True, chain_seconds=None, keep=keep
    )
    assert isinstance(answer, Ops)


async def test_an_execution_waiting_for_its_next_call_is_kept() -> None:
    live = LiveExecutions(client)
    await first_step(live, "r1")
    assert len(live) == 1
    live.clear()


async def test_keep_false_abandons_the_execution_once_it_answered() -> None:
    live = LiveExecutions(client)
    await first_step(live, "r1", keep=False)
    assert len(live) == 0


async def test_executions_idle_too_long_are_dropped_at_the_next_call() -> None:
    live = LiveExecutions(client, max_idle_seconds=0.05)
    await first_step(live, "old")
    await asyncio.sleep(0.1)
    await first_step(live, "new")
    assert len(live) == 1  # "old" went; "new" stays
    live.clear()


async def test_at_most_max_live_are_kept() -> None:
    live = LiveExecutions(client, max_live=2)
    for run_id in ("r1", "r2", "r3"):
        await first_step(live, run_id)
    assert len(live) == 2
    live.clear()


async def test_a_finished_dropped_execution_is_released_and_answers_nothing() -> None:
    """Dropped once its run is over, an execution lets go of its context (so reference
    counting frees the run); a call that still reached it gets None, and a fresh
    execution replays, as for any execution that cannot answer."""
    execution = Execution(two, client, request("r1"), report_completion=True, chain_seconds=1.0)
    answer = await execution.call(request("r1"))  # a chain: both steps and the return
    assert isinstance(answer, Ops)
    assert execution.finished
    execution.abandon()  # what LiveExecutions.drop does
    assert execution.context is None
    assert await execution.call(request("r1")) is None
