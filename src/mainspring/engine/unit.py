"""One store unit being built: the writes for one job's outcome, and what to remember.

A unit writes to the store now and changes the in-memory run state only after all its
writes succeeded (:meth:`Unit.commit_memory`), so a failed unit leaves memory untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mainspring.engine.records import Job, JobKind, RunStatus
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.store.contract import StepRow, Tx
from mainspring.protocol.opcodes import ParallelMode, memo_kind
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function


class Emitter(Protocol):
    """The engine's side of a unit: publish its own events, know its functions."""

    def emit(self, tx: Tx, events: Sequence[Event]) -> list[Job]:
        """Record internal events in this unit (starting runs, resuming pauses); returns
        the jobs to queue once it commits."""
        ...

    def function(self, function_id: str) -> Function[Any] | None:
        """This engine's function with that id, if any."""
        ...


class Unit:
    """Builds one store unit for a response: DB writes now, memory changes after them."""

    def __init__(self, tx: Tx, run: ActiveRun, job: Job, now: int, emitter: Emitter) -> None:
        self.tx = tx
        self.emitter = emitter
        self.run = run
        self.job = job
        self.now = now
        #: Jobs written by this unit, to put on the in-memory queue once it commits.
        self.jobs: list[Job] = []
        self.follow_ups: list[Job] = []
        self.after: list[Callable[[], None]] = []
        #: Run once the unit has committed, by the executor (log lines: engine/runlog.py).
        self.notes: list[Callable[[], None]] = []
        #: Columns of the run row to update, written once at the end of the unit.
        self.run_fields: dict[str, Any] = {}
        #: Whether this unit created a pending set (the run's flag is updated after it).
        self.grouped = False
        #: Follow-up ids that cannot exist yet, so settling skips the existence check.
        self.fresh_ids: set[str] = set()
        #: Steps this unit records, in order: the next one's position is after them.
        self.saved = 0
        #: When the call this unit records began (None for engine-side results).
        self.started: int | None = None
        #: The function now waits only on timers and pauses.
        self.parked = False
        #: The suspended function saw a result that was not the one recorded: drop it.
        self.stale = False
        self.finished: RunStatus | None = None
        #: The app version serving the function now: what the steps of this unit are
        #: recorded under (None when the app has none).
        self.app_version: str | None = None
        #: The run's "started" log line among ``notes`` and its event's name, which a
        #: "finished" line of the same unit takes over (engine/runlog.py).
        self.start_note: tuple[Callable[[], None], Any] | None = None

    def enqueue(self, job: Job) -> None:
        """Queue a follow-up of this run; written by :meth:`settle_jobs`."""
        self.follow_ups.append(job)

    def settle_jobs(self, *, keep_current: bool) -> None:
        """Delete (or keep, for a retry) the current job and write the follow-ups."""
        tx, current, follow_ups = self.tx, self.job, self.follow_ups
        if (
            not keep_current
            and len(follow_ups) == 1
            and follow_ups[0].run_at <= self.now
            and (follow_ups[0].id in self.fresh_ids or not tx.job_exists(follow_ups[0].id))
        ):
            # The common case of a sequential run: the finished job's row becomes the next.
            follow = follow_ups[0]
            follow = Job(
                id=current.id,
                run_id=follow.run_id,
                kind=follow.kind,
                run_at=follow.run_at,
                step_id=follow.step_id,
                data=follow.data,
            )
            tx.repurpose_job(current.id, follow)
            self.jobs.append(follow)
            return
        if not keep_current:
            tx.delete_job(current.id)
        self.jobs.extend(tx.enqueue_all(follow_ups))

    def commit_memory(self) -> None:
        fields = self.run_fields
        if self.finished is not None:
            fields.pop("status", None)  # the final status is already written
        if fields:
            self.tx.update_run(self.run.run_id, **fields)
        # Emptied as they run: the changes are closures over this unit, and a unit that
        # held them would be a cycle left to the garbage collector.
        after, self.after = self.after, []
        for change in after:
            change()


class OpsState:
    """Run flags one response may change: written with the unit, remembered after it."""

    __slots__ = ("coalesce", "force", "grouped", "has_pending")

    def __init__(self, run: ActiveRun) -> None:
        self.force = run.force_step_plan
        self.coalesce = run.coalesce_key
        self.grouped = run.grouped
        self.has_pending = False

    def write(self, unit: Unit) -> None:
        run = unit.run
        if self.force != run.force_step_plan:
            unit.run_fields["force_step_plan"] = int(self.force)
        if self.coalesce != run.coalesce_key:
            unit.run_fields["coalesce_key"] = self.coalesce

        def remember() -> None:
            run.force_step_plan = self.force
            run.coalesce_key = self.coalesce
            run.grouped = self.grouped

        unit.after.append(remember)


def record_step(
    unit: Unit,
    state: OpsState,
    step_id: str,
    memo: bytes,
    user_id: str,
    op: str,
    *,
    started_at: int | None = None,
    ended_at: int | None = None,
) -> bool:
    """Save one step's memo; False if it was recorded before (the first result stands).
    ``ended_at`` defaults to now (the SDK may report when the step's handler ended)."""
    run = unit.run
    inserted, state.has_pending = unit.tx.save_step(
        run.run_id,
        step_id,
        memo,
        seq=len(run.stack) + unit.saved + 1,
        user_id=user_id,
        op=op,
        at=unit.now if ended_at is None else ended_at,
        grouped=state.grouped,
        attempt=unit.job.attempt,
        started_at=started_at,
        app_version=unit.app_version,
    )
    if not inserted:
        return False
    unit.saved += 1
    if not state.has_pending:
        state.grouped = False

    def remember() -> None:
        run.memos[step_id] = memo
        run.stack.append(step_id)
        if memo_kind(op) != "StepRun":
            run.kinds[step_id] = op
        if unit.app_version is not None:
            run.versions[step_id] = unit.app_version

    unit.after.append(remember)
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class ChainedStep:
    """A step a chain ran (see :func:`record_chain`)."""

    step_id: str
    memo: bytes
    user_id: str
    op: str
    started_at: int | None
    ended_at: int


def record_chain(unit: Unit, state: OpsState, steps: Sequence[ChainedStep]) -> None:
    """:func:`record_step` for steps that ran one after another, in order. A run with no
    parallel group out saves them with one ``save_steps`` (one statement on PostgreSQL)."""
    if state.grouped or len(steps) < 2:
        for step in steps:
            record_step(
                unit,
                state,
                step.step_id,
                step.memo,
                step.user_id,
                step.op,
                started_at=step.started_at,
                ended_at=step.ended_at,
            )
        return
    run = unit.run
    first = len(run.stack) + unit.saved + 1
    rows = [
        StepRow(s.step_id, s.memo, first + i, s.user_id, s.op, s.started_at, s.ended_at)
        for i, s in enumerate(steps)
    ]
    inserted = unit.tx.save_steps(
        run.run_id, rows, attempt=unit.job.attempt, app_version=unit.app_version
    )
    recorded = [step for step in steps if step.step_id in inserted]
    unit.saved += len(recorded)

    def remember() -> None:
        for step in recorded:
            run.memos[step.step_id] = step.memo
            run.stack.append(step.step_id)
            if memo_kind(step.op) != "StepRun":
                run.kinds[step.step_id] = step.op
            if unit.app_version is not None:
                run.versions[step.step_id] = unit.app_version

    unit.after.append(remember)


def maybe_discover(
    unit: Unit,
    state: OpsState,
    step_id: str,
    mode: str | None,
    has_pending: bool,
    *,
    failure: bool = False,
) -> None:
    """Queue the call that follows a recorded step, when protocol §7.2 says one is due:
    in wait mode once the group's pending set is empty (one coalesced job), in race mode
    after every completion, and always for a step outside any group."""
    run = unit.run
    race = mode == ParallelMode.RACE.value
    if has_pending and not race:
        return  # another member of the group will call the function
    if state.coalesce is not None and not race:
        job_id = f"{run.run_id}-{state.coalesce}-discover"
        state.coalesce = None
    else:
        job_id = f"{run.function_id}:{run.run_id}-{step_id}" + ("-failure" if failure else "")
        # Only the first record of this step enqueues this id: it cannot exist yet.
        unit.fresh_ids.add(job_id)
    unit.enqueue(Job(id=job_id, run_id=run.run_id, kind=JobKind.DISCOVER, run_at=unit.now))
    state.force = False


def record_and_discover(
    unit: Unit,
    state: OpsState,
    step_id: str,
    memo: bytes,
    user_id: str,
    op: str,
    mode: str | None,
    *,
    started_at: int | None = None,
) -> None:
    """Record a step's result and queue the call that follows it, when one is due."""
    if record_step(unit, state, step_id, memo, user_id, op, started_at=started_at):
        maybe_discover(unit, state, step_id, mode, state.has_pending)
