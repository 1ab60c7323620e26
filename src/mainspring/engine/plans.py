"""Recording a parallel plan the SDK ran in the call that found it (``sdk/plans.py``).

Such an answer is a chain (:func:`is_chain`): steps that ran, recorded in the order
they finished, then perhaps the failed steps of its last plan. What it needs beyond a
chain, so that the run goes on exactly as if the plan had been reported and each step
called on its own (protocol §7, wait mode):

- each plan is filed as one batch for reruns (``Tx.record_group``, as a pending set's
  coalesce key files a reported plan), so a rerun from one of its steps reuses its
  siblings;
- several failed steps become a pending set, so that one coalesced call follows once the
  last of them is recorded; each one whose error is retried gets a call targeted at it,
  at the next attempt, as its own call would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from mainspring.engine import drift
from mainspring.engine.records import Job, JobKind
from mainspring.engine.unit import OpsState, Unit
from mainspring.protocol.messages import Ops, StepOp
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.function import Function

FAILED_OPS = (Opcode.STEP_ERROR, Opcode.STEP_FAILED)


def batch_key(run_id: str, step_ids: Sequence[str]) -> str:
    """The key filing a batch of steps (the same shape as a reported plan's)."""
    ids = "".join(sorted(step_ids))
    return hashlib.sha1((run_id + ids).encode(), usedforsecurity=False).hexdigest()[:16]


def file_plans(unit: Unit, response: Ops, recorded_before: int) -> None:
    """File each plan of ``response`` as a batch planned after the steps recorded before
    it: ``recorded_before`` (the run's steps before this answer) plus the steps that ran
    ahead of the plan in this answer."""
    run_id = unit.run.run_id
    ops = response.ops
    for first, count in response.plans:
        ids = [op.id for op in ops[first : first + count]]
        ahead = sum(1 for op in ops[:first] if op.op is Opcode.STEP_RUN)
        unit.tx.record_group(run_id, ids, batch_key(run_id, ids), after_seq=recorded_before + ahead)


def await_failed(unit: Unit, state: OpsState, failed: Sequence[StepOp]) -> None:
    """Make the failed steps of a plan the run's pending set: the call that follows comes
    once every one of them is recorded (retried to success, or failed for good)."""
    run = unit.run
    ids = [op.id for op in failed]
    state.coalesce = batch_key(run.run_id, ids)
    state.grouped = unit.grouped = True
    unit.tx.set_pending(run.run_id, ids, state.coalesce, after_seq=len(run.stack) + unit.saved)


def retry_alone(unit: Unit, op: StepOp, run_at: int) -> Job:
    """The next attempt of a plan's failed step: a call targeted at it, as its own
    planned call's retry would be (``drift.targeted_retry``), under the id of that
    planned call, since the call that failed may leave several."""
    run = unit.run
    again = drift.targeted_retry(
        unit.job, step_id=op.id, user_id=op.user_id or op.display_name, run_at=run_at
    )
    return dataclasses.replace(
        again, id=f"{run.function_id}:{run.run_id}-{op.id}-plan", kind=JobKind.PLAN
    )


def allowed_for(function: Function[Any] | None) -> bool:
    """Whether a call of ``function`` may run a parallel plan at once: not under step
    concurrency limits, which take a slot per call (``flow/concurrency.py``)."""
    return function is None or not function.config.flow.concurrency


def is_chain(ops: list[StepOp]) -> bool:
    """Whether ``ops`` are steps an SDK ran one after another in a single call (a chain of
    Mainspring's SDK, or the buffered steps of a checkpointing SDK): ``StepRun`` ops,
    perhaps ended by the failure of the step that followed them, or of several steps of a
    parallel plan our SDK ran in the call (below). Race groups are never
    reported this way: an SDK plans them (``StepPlanned``) or reports them alone.

    The chain ran on a first attempt (our SDK chains only then), so a retried failure at
    its end retries the call as for a lone step: the step's next attempt is the call's."""
    if len(ops) < 2 or any(op.parallel_mode is not None for op in ops):
        return False
    ran = 0
    while ran < len(ops) and ops[ran].op is Opcode.STEP_RUN:
        ran += 1
    return all(op.op in FAILED_OPS for op in ops[ran:])
