"""Code that changed under a run in flight: the engine's half of the drift rules.

A run outlives the deploy that started it: a retry, a sleep or a queued step may come
back to code where a step was renamed, removed or moved. The rules are the reference's:
a step id the code no longer reaches is a step that no longer exists (its result, if any,
goes unused), and an id the run has not seen is a new step with its own retry budget.

Two places need the engine's help:

* A targeted call (a planned parallel member, or a step being retried) whose step the
  code no longer reaches. The SDK says so (our ``StepNotFoundError``, the official
  Python SDK's ``step_unexpected``, the ts SDK's ``requestedStep`` body) instead of
  running anything; the engine drops that planned step, writes the drop into the run's
  history under the step's name, and calls the function again untargeted, so the run goes
  on with whatever the new code does there.
* A step that failed in an untargeted call is retried as a call *targeted* at it, so that
  if the code changed before the retry, the retry cannot hand its attempt number to a
  different step: that step is reached by a fresh call at attempt 0.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import orjson

from mainspring.engine.records import Job
from mainspring.engine.unit import OpsState, Unit, maybe_discover
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import Drift, ErrorPayload, StepOp

logger = logging.getLogger("mainspring.engine")

#: ``op`` of a history entry for a planned step that the function's code no longer reaches.
DROPPED_OP = "StepDropped"

#: ``op`` of a history entry saying a call did not reach every recorded step.
CODE_CHANGED_OP = "CodeChanged"

#: Codes with which SDKs refuse a call targeted at a step their code does not reach.
_MISSING_STEP_CODES = frozenset({ErrorCode.STEP_NOT_FOUND.value, ErrorCode.STEP_UNEXPECTED.value})


def is_missing_step(error: ErrorPayload) -> bool:
    """Whether a failed targeted call says the code no longer reaches the targeted step."""
    if error.code in _MISSING_STEP_CODES:
        return True
    # The ts SDK answers a 500 whose body is {error, requestedStep, foundSteps, ...}.
    return isinstance(error.data, dict) and "requestedStep" in error.data


def drop_unreached_step(unit: Unit, detail: str) -> None:
    """Drop the planned step ``unit.job`` targets, record why (``detail``: what the call
    answered), and queue the untargeted call that lets the run go on (in a wait-mode
    group, once the group's other members are done)."""
    run, job = unit.run, unit.job
    assert job.step_id is not None
    state = OpsState(run)
    mode = (job.data or {}).get("mode")
    if job.step_id not in run.memos:
        note_unreached_step(unit, detail)
    # else recorded after all (by a racing call): not a drift, only a call too late.
    others_pending = unit.tx.drop_pending(run.run_id, job.step_id)
    maybe_discover(
        unit, state, job.step_id, mode if isinstance(mode, str) else None, others_pending
    )
    unit.settle_jobs(keep_current=False)
    state.write(unit)


def note_unreached_step(unit: Unit, detail: str) -> None:
    """Write into the run's history (and the log) that the step ``unit.job`` targets is
    no longer reached, and take it out of the run's pending set."""
    run, job = unit.run, unit.job
    assert job.step_id is not None
    user_id = str((job.data or {}).get("user_id") or "")
    now = "" if unit.app_version is None else f" (the app now runs {unit.app_version!r})"
    message = (
        f"step {user_id or job.step_id!r} is no longer reached by the function's code (it "
        f"changed while the run was in flight{now}); its planned call was dropped after "
        f"{job.attempt} failed attempt(s) and the run goes on. {detail}"
    ).rstrip()
    logger.warning("run %s: %s", run.run_id, message)
    unit.tx.record_attempt(
        run.run_id,
        job.step_id,
        attempt=job.attempt,
        after_seq=len(run.stack),
        user_id=user_id,
        op=DROPPED_OP,
        started_at=unit.started,
        ended_at=unit.now,
        error=orjson.dumps(ErrorPayload(name="StepDropped", message=message).to_wire()),
    )


def note_code_changed(unit: Unit, drift: Drift, *, returned: bool) -> None:
    """Write into the run's history (once per set of steps) that a call did not reach
    every recorded step, naming them; and warn in the log the first time."""
    run = unit.run
    ids = sorted(drift.unreached)
    digest = hashlib.sha1("".join(ids).encode(), usedforsecurity=False).hexdigest()[:16]
    names = unit.tx.step_names(run.run_id, ids)
    position = {step_id: i for i, step_id in enumerate(run.stack)}
    in_order = sorted(drift.unreached, key=lambda step_id: position.get(step_id, len(position)))
    unreached = [names.get(step_id, step_id) for step_id in in_order][:20]
    more = len(drift.unreached) - len(unreached)
    listed = ", ".join(repr(name) for name in unreached) + (f" and {more} more" if more else "")
    if returned:
        what = "the function returned without reaching"
    else:
        new = ", ".join(repr(name) for name in drift.new[:20])
        what = f"the function went on to {new} before reaching"
    message = (
        f"the function's code changed under this run: {what} the recorded step(s) "
        f"{listed}{_versions(unit, in_order)}; their results go unused unless it reaches "
        "them later."
    )
    entry = ErrorPayload(name="CodeChanged", message=message).to_wire()
    if unit.tx.record_attempt(
        run.run_id,
        f"drift:{digest}",
        attempt=0,
        after_seq=len(run.stack),
        user_id="",
        op=CODE_CHANGED_OP,
        started_at=None,
        ended_at=unit.now,
        error=orjson.dumps(entry),
    ):
        logger.warning("run %s: %s", run.run_id, message)


def _versions(unit: Unit, step_ids: list[str]) -> str:
    """`` (recorded by app version 'v1'; the app now runs 'v2')``, when versions are known."""
    recorded = sorted({v for step_id in step_ids if (v := unit.run.versions.get(step_id))})
    if not recorded and unit.app_version is None:
        return ""
    by = ", ".join(repr(v) for v in recorded) or "no app version"
    now = "no app version" if unit.app_version is None else repr(unit.app_version)
    return f" (recorded by app version {by}; the app now runs {now})"


def targeted_step_unreached(unit: Unit, reported: Sequence[StepOp] = ()) -> bool:
    """Whether the call ``unit.job`` targeted came back without the targeted step: not
    recorded before, and not among the steps the answer reports. (Most calls target no
    step: they cost one attribute read here.)"""
    step_id = unit.job.step_id
    if step_id is None or step_id in unit.run.memos:
        return False
    return all(op.id != step_id for op in reported)


def targeted_retry(job: Job, *, step_id: str, user_id: str, run_at: int) -> Job:
    """The next attempt of ``job`` after the step ``step_id`` failed in it: the same job,
    now targeted at that step (see the module's docstring)."""
    data = dict(job.data or {})
    if job.step_id != step_id:
        data.update(user_id=user_id, mode=None)
    return Job(
        id=job.id,
        run_id=job.run_id,
        kind=job.kind,
        run_at=run_at,
        step_id=step_id,
        attempt=job.attempt + 1,
        priority=job.priority,
        data=data,
    )
