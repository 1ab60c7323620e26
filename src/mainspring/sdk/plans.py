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
undo.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Sequence

from mainspring.protocol.messages import CallRequest, CallResponse, Ops, StepOp
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.ops import Registration


def runs_together(regs: Sequence[Registration]) -> bool:
    """Whether ``regs``, all the steps a blocked function waits on, are a plan this call
    may run: ``step.run`` steps of wait-mode groups or ``asyncio.gather`` (a lone step
    outside any group runs anyway, as a chain's)."""
    if not regs or (len(regs) == 1 and not regs[0].in_parallel):
        return False
    return all(
        reg.spec.opcode is Opcode.STEP_RUN and reg.spec.handler is not None and not reg.race
        for reg in regs
    )


async def run_together(
    execute: Callable[[Registration, CallRequest], Awaitable[CallResponse]],
    regs: Sequence[Registration],
    request: CallRequest,
) -> CallResponse:
    """Run every step of ``regs`` at once; their outcomes as one response (see the
    module's docstring). A step whose outcome is not a step's (an unserialisable output,
    a nested step) fails the call with it, as its own call would have."""
    finished: list[CallResponse] = []

    async def one(reg: Registration) -> None:
        finished.append(await execute(reg, request))

    await asyncio.gather(*(one(reg) for reg in regs))
    ran: list[StepOp] = []
    failed: list[StepOp] = []
    retry_after: datetime.datetime | None = None
    for response in finished:
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
