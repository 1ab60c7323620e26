"""Which plans a call runs itself (``sdk/plans.py``), decided from the steps alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

import pytest

from mainspring.protocol.messages import CallContext, CallRequest, CallResponse, Ops
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.ops import Registration, ResultKind, StepSpec
from mainspring.sdk.plans import run_together, runs_together, sync_capacity
from mainspring.sdk.serve.threads import InlineExecutor


def reg(
    n: int, *, opcode: Opcode = Opcode.STEP_RUN, in_parallel: bool = True, race: bool = False
) -> Registration:
    spec = StepSpec(
        opcode=opcode,
        user_id=f"s{n}",
        name=f"s{n}",
        result=ResultKind.DATA,
        handler=(lambda: n) if opcode is Opcode.STEP_RUN else None,
    )
    return Registration(
        spec=spec,
        hashed_id=f"h{n}",
        index=0,
        seq=n,
        in_parallel=in_parallel,
        race=race,
        context=None,
    )


def test_a_wait_mode_plan_of_steps_runs_together() -> None:
    assert runs_together([reg(1), reg(2)])
    assert runs_together([reg(1)])  # a group of one
    assert runs_together([reg(1, in_parallel=False), reg(2, in_parallel=False)])  # gather


@pytest.mark.parametrize(
    "regs",
    [
        [],
        [reg(1, in_parallel=False)],  # a lone step: a chain's, not a plan
        [reg(1), reg(2, race=True)],  # a race group's branch
        [reg(1), reg(2, opcode=Opcode.SLEEP)],  # a sleep in the plan
        [reg(1), reg(2, opcode=Opcode.WAIT_FOR_EVENT)],
    ],
)
def test_what_is_left_to_the_plan(regs: list[Registration]) -> None:
    assert not runs_together(regs)


def test_a_sync_plan_must_fit_its_thread_pool() -> None:
    plan = [reg(i) for i in range(4)]
    assert runs_together(plan, side_by_side=4)
    assert not runs_together(plan, side_by_side=3)
    assert not runs_together(plan[:2], side_by_side=1)  # one at a time is no plan


def test_the_capacity_of_each_kind_of_executor() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=7) as pool:
        assert sync_capacity(pool) == 7
    assert sync_capacity(InlineExecutor()) == 1
    assert sync_capacity(None) == min(32, (os.cpu_count() or 1) + 4)


REQUEST = CallRequest(fn_id="f", event={}, events=[], steps={}, ctx=CallContext(run_id="r"))


async def test_a_plan_answers_in_the_order_its_steps_finished_with_failures_last() -> None:
    loop = asyncio.get_running_loop()
    plan = [reg(i) for i in range(4)]
    futures = {r.hashed_id: loop.create_future() for r in plan}

    def start(r: Registration, request: CallRequest) -> asyncio.Future[CallResponse]:
        return futures[r.hashed_id]

    answer = asyncio.ensure_future(run_together(start, plan, REQUEST))
    for n, op in [(2, Opcode.STEP_RUN), (0, Opcode.STEP_ERROR), (3, Opcode.STEP_RUN)]:
        futures[f"h{n}"].set_result(Ops([plan[n].to_op(op, data=b"1")]))
        await asyncio.sleep(0)
    assert not answer.done()  # one step still runs
    futures["h1"].set_result(Ops([plan[1].to_op(Opcode.STEP_RUN, data=b"1")]))
    response = await answer
    assert isinstance(response, Ops)
    assert [op.id for op in response.ops] == ["h2", "h3", "h1", "h0"]
    assert response.plans == [(0, 4)]


async def test_cancelling_a_plans_call_cancels_its_steps() -> None:
    loop = asyncio.get_running_loop()
    plan = [reg(i) for i in range(3)]
    steps = [loop.create_future() for _ in plan]
    started = iter(steps)

    def start(r: Registration, request: CallRequest) -> asyncio.Future[CallResponse]:
        return next(started)

    answer = asyncio.ensure_future(run_together(start, plan, REQUEST))
    await asyncio.sleep(0)
    steps[0].set_result(Ops([plan[0].to_op(Opcode.STEP_RUN, data=b"1")]))
    answer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answer
    assert [step.cancelled() for step in steps] == [False, True, True]
