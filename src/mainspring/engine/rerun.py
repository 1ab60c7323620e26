"""Reruns: a new run of a run's function with the same triggering events (all of a batch's),
from the start or from one of its steps.

Rerun from a step S, the new run re-executes S and everything that came after S in the
original run's execution order, and reuses the recorded results of what came before: they
are copied in under the same hashed ids and memos, and the SDK replays them without running
them. The order is the original run's stack (the order results were recorded), except that
the branches of a parallel group are not ordered among themselves:

* S outside any parallel group: every step recorded before S is reused.
* S planned in a parallel batch (one answer that planned several steps, as
  ``group.parallel`` and ``asyncio.gather`` do): the steps recorded before the batch was
  planned are reused, and so are S's siblings in the batch that completed, whenever they
  were recorded; a sibling that failed or never finished runs again with S, and so does
  everything recorded after the batch was planned (a branch's later steps, the steps after
  the group). Siblings are taken to be independent of S: each was planned before any of
  them ran.
* A step that only failed attempts (a run cancelled while the step was retrying) counts from
  its first failure. A name under which only entries that are no attempt of a step are
  filed (a failed call of the function, a dropped step, a note) is refused, naming it, as
  is a name the run never recorded.

No reused step can have seen S's result, so none carries a value computed from the old one:
it was recorded before S's batch was planned (or, outside a group, before S's result), or
it is a sibling planned alongside S. Steps of runs recorded before batches were kept (older
versions), and steps a rerun reused (their batch stays with the run that planned it), are
taken as planned alone.

A reused step keeps the times of the run that executed it and is marked as copied from it
(``StepAttempt.copied_from``): its span in the trace keeps its real duration, before this
run's start; the new run's own ``started_at`` is the rerun's.

The new run is an explicit action, not an event: it passes none of the schedule-time flow
control (rate limit, idempotency key, debounce, batching, singleton) nor a throttle, and
has no idempotency key; concurrency limits, cancel conditions and timeouts apply as to any
run. Where it came from is filed with it (:class:`~mainspring.engine.records.RerunOrigin`,
``Engine.rerun_origin``). Everything is written in one store unit: the run, its copied
steps, its origin and its first job land together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import ulid

from mainspring.engine import deadlines
from mainspring.engine.clock import Clock
from mainspring.engine.drift import CODE_CHANGED_OP, DROPPED_OP
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.flow.skips import SKIPPED_OP, WAITING_OP
from mainspring.engine.intake import cancel_pauses
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import Job, JobKind, RerunOrigin, StepAttempt
from mainspring.engine.store.contract import NewRun, Store, Tx
from mainspring.errors import MainspringError, RunNotFoundError
from mainspring.sdk.function import Function


async def rerun(
    *,
    store: Store,
    functions: Mapping[str, Function[Any]],
    clock: Clock,
    queue: JobQueue,
    run_id: str,
    from_step: str | None = None,
) -> str:
    """Start a rerun of ``run_id`` (see the module); returns the new run's id.

    Raises :class:`~mainspring.RunNotFoundError` for an unknown run, and
    :class:`~mainspring.MainspringError` naming the problem for a function that is no
    longer registered or a ``from_step`` the run never recorded.
    """
    if from_step is not None and (not isinstance(from_step, str) or not from_step):
        raise MainspringError("from_step: must be a non-empty step id")
    state = await store.load_run_state(run_id)
    if state is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    original = state.run
    function = functions.get(original.function_id)
    if function is None:
        raise MainspringError(
            f"cannot rerun run {run_id!r}: its function {original.function_id!r} is no longer "
            "registered"
        )
    events = orjson.loads(state.events_json)
    if not events:
        raise MainspringError(f"cannot rerun run {run_id!r}: it has no triggering event")
    now = clock.now_ms()
    new = NewRun(
        run_id=str(ulid.ULID()),
        function_id=function.id,
        event_id=original.event_id,
        events_json=state.events_json,
        idempotency_key=None,
        max_attempts=function.config.max_attempts,
        created_at=now,
    )
    start = Job(id=f"{new.run_id}-start", run_id=new.run_id, kind=JobKind.START, run_at=now)
    cancels = cancel_pauses(function, new.run_id, events[0], now) if function.config.cancel else []
    deadline = deadlines.start_deadline(function, new)

    def unit(tx: Tx) -> list[Job]:
        cut: tuple[int, tuple[str, ...]] | None = None
        if from_step is not None:
            cut = _cut(tx, run_id, from_step)
        if not tx.create_run(new):
            raise MainspringError(f"cannot rerun run {run_id!r}: the new run id is taken")
        copied = 0
        if cut is not None:
            before, siblings = cut
            copied = tx.copy_steps(run_id, new.run_id, before=before, also=siblings)
            if copied and state.request_version != -1:
                # The copied memos were keyed the way that run's SDK said it hashes ids.
                tx.update_run(new.run_id, request_version=state.request_version)
        tx.record_rerun(RerunOrigin(new.run_id, run_id, from_step, copied, now))
        jobs = [start] if tx.enqueue(start) else []
        for pause in cancels:
            tx.create_pause(pause)
        if deadline is not None and tx.enqueue(deadline):
            jobs.append(deadline)
        return jobs

    try:
        jobs = await store.transact(unit)
    except _UnknownStep:
        assert from_step is not None
        raise MainspringError(
            _unknown_step(run_id, from_step, await store.history(run_id))
        ) from None
    # Not adopted by the executor: the run's first job loads it, copied steps included.
    for job in jobs:
        queue.push(job)
    return new.run_id


#: History entries that are no attempt of a step (a rerun cannot start from them): what
#: each stands for, as a refusal explains it.
_NOT_STEPS = {
    FUNCTION_ERROR_OP: "a failed call of the function",
    DROPPED_OP: "a planned call dropped once the code no longer reached the step",
    CODE_CHANGED_OP: "a note",
    SKIPPED_OP: "a note",
    WAITING_OP: "a note",
}


class _UnknownStep(Exception):
    """The original run has no step to rerun from by that name (explained after the unit,
    from the run's history)."""


def _cut(tx: Tx, run_id: str, from_step: str) -> tuple[int, tuple[str, ...]]:
    """What a rerun from ``from_step`` reuses (see the module): the steps before a position
    of the original's stack, and the completed siblings of the step's parallel batch."""
    found = tx.step_position(run_id, from_step)
    if found is None:
        raise _UnknownStep
    step_id, position = found
    group = tx.step_group(run_id, step_id)
    if group is None:
        return position, ()
    return min(position, group.after + 1), group.completed


def _unknown_step(run_id: str, step: str, history: Sequence[StepAttempt]) -> str:
    """Why a run cannot be rerun from ``step``, and the steps it can be rerun from."""
    head = f"cannot rerun run {run_id!r} from step {step!r}"
    named = [e for e in history if step in (e.user_id, e.step_id)]
    if named and all(e.op in _NOT_STEPS for e in named):
        filed = ", ".join(sorted({f"{_NOT_STEPS[e.op]} ({e.op})" for e in named}))
        return (
            f"{head}: no attempt of that step ran in the run, only {filed} is filed under "
            "it; rerun from another step or from the start"
        )
    why = (
        "the run never recorded that step (name it by its id, as the function wrote it, or "
        "by its hashed id)"
    )
    steps = list(dict.fromkeys(e.user_id for e in history if e.user_id and e.op not in _NOT_STEPS))
    if steps:
        more = f" and {len(steps) - 10} more" if len(steps) > 10 else ""
        why += f"; its steps: {', '.join(repr(name) for name in steps[:10])}{more}"
    return f"{head}: {why}"


def origin_text(origin: RerunOrigin) -> str:
    """``rerun of <run id>[ from step <s>]``, as pages and the CLI show it."""
    text = f"rerun of {origin.original_id}"
    return text if origin.from_step is None else f"{text} from step {origin.from_step}"
