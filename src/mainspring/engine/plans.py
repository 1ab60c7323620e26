"""Recording a parallel plan the SDK ran in the call that found it (``sdk/plans.py``).

Such an answer is a chain (``executor._is_chain``): steps that ran, recorded in the order
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

import hashlib
from collections.abc import Sequence

from mainspring.engine.records import Job, JobKind
from mainspring.engine.unit import OpsState, Unit
from mainspring.protocol.messages import Ops, StepOp
from mainspring.protocol.opcodes import Opcode

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
    planned call's retry would be."""
    run, job = unit.run, unit.job
    return Job(
        id=f"{run.function_id}:{run.run_id}-{op.id}-plan",
        run_id=run.run_id,
        kind=JobKind.PLAN,
        run_at=run_at,
        step_id=op.id,
        attempt=job.attempt + 1,
        priority=job.priority,
        data={"mode": None, "user_id": op.user_id or op.display_name},
    )
