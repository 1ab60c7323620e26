"""Parallel plans run in the call that found them (Mainspring's executor only).

Under protocol §7 a group's steps are reported as a plan (``StepPlanned`` each) and the
executor calls the function once per step. When the executor asks for it (in process, or
with ``x-mainspring-parallel-plans`` over HTTP), the call that found a plan of ``step.run``
steps instead runs them side by side and answers their outcomes in one 206:

- every step that ran comes first, as ``StepRun``, in the order the steps *finished*
  (that order is the run's stack, which a replay from the top hands results out in);
- then every failed step, as ``StepError`` (the executor retries each one as an ordinary
  call targeted at it) or ``StepFailed`` (its last attempt).

The executor records all of it in one store unit. What was not recorded runs again after a
crash, as for any step. Race groups are left to the plan: their point is that a branch
goes on as soon as its own step finished, which waiting for every branch in one call would
undo. So is a sync function's plan with more steps than its thread pool runs at once (or
with no pool, ``INNGEST_THREAD_POOL_MAX_WORKERS=0``): its steps would wait for each other
inside one call, where calls of their own could run side by side, on other instances too,
each within its own call timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import os
from collections.abc import Callable, Sequence

from mainspring.protocol.messages import CallRequest, CallResponse, Ops, StepOp
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.ops import Registration
from mainspring.sdk.tasks import BOOKKEEPING


def sync_capacity(executor: concurrent.futures.Executor | None) -> int:
    """How many sync steps ``executor`` runs at once: None is the loop's default executor
    (asyncio sizes it min(32, CPUs + 4)); an executor that is no thread pool (the inline
    one of ``INNGEST_THREAD_POOL_MAX_WORKERS=0``) runs one at a time."""
    if executor is None:
        return min(32, (os.cpu_count() or 1) + 4)
    if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
        return executor._max_workers
    return 1


def runs_together(regs: Sequence[Registration], *, side_by_side: int | None = None) -> bool:
    """Whether ``regs``, all the steps a blocked function waits on, are a plan this call
    may run: ``step.run`` steps of wait-mode groups or ``asyncio.gather`` (a lone step
    outside any group runs anyway, as a chain's). ``side_by_side``: for a sync function,
    how many of its steps run at once; a plan must fit, and one at a time is no plan."""
    if not regs or (len(regs) == 1 and not regs[0].in_parallel):
        return False
    if side_by_side is not None and (side_by_side < 2 or len(regs) > side_by_side):
        return False
    return all(
        reg.spec.opcode is Opcode.STEP_RUN and reg.spec.handler is not None and not reg.race
        for reg in regs
    )


async def run_together(
    start: Callable[[Registration, CallRequest], asyncio.Future[CallResponse]],
    regs: Sequence[Registration],
    request: CallRequest,
) -> CallResponse:
    """Run every step of ``regs`` at once (``start`` makes each one's task); their
    outcomes as one response (see the module's docstring). A step whose outcome is not a
    step's (an unserialisable output, a nested step) fails the call with it, as its own
    call would have."""
    finished: list[asyncio.Future[CallResponse]] = []
    all_done = asyncio.get_running_loop().create_future()

    def on_done(step: asyncio.Future[CallResponse]) -> None:  # in the order steps finish
        finished.append(step)
        if len(finished) == len(regs) and not all_done.done():
            all_done.set_result(None)

    # Not asyncio.gather: it would add a callback (and a copy of the context) per step on
    # top of these; a fan-out of thousands of steps is exactly where that shows.
    steps = [start(reg, request) for reg in regs]
    for step in steps:
        step.add_done_callback(on_done, context=BOOKKEEPING)
    if not steps:
        all_done.set_result(None)
    try:
        await all_done
    except asyncio.CancelledError:
        for step in steps:
            step.cancel()
        raise
    ran: list[StepOp] = []
    failed: list[StepOp] = []
    retry_after: datetime.datetime | None = None
    for response in (step.result() for step in finished):
        if not isinstance(response, Ops):
            return response
        for op in response.ops:
            (ran if op.op is Opcode.STEP_RUN else failed).append(op)
        if response.retry_after is not None and (
            retry_after is None or response.retry_after > retry_after
        ):
            retry_after = response.retry_after  # the latest any failed step asked for
    ops = [*ran, *failed]
    return Ops(ops, retry_after=retry_after, plans=[(0, len(ops))])
