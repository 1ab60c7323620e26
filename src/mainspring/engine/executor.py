"""The executor: take one due job, call the function, record what it answered.

This is the server half of protocol §6 and §7. One job becomes one call request; the
answer becomes one store unit, so a step's result, the deletion of the job that produced
it and the job that follows are recorded together or not at all. A step whose result is
recorded is never run again: a planned step's job is dropped if its memo exists, and
``save_step`` keeps the first result of a step recorded twice.

Parallel groups (§7.2): a response with more than one op sets ``force_step_plan``
(``disable_immediate_execution`` on later calls); if it holds a plan-type op the ops become
the run's pending set. Each completion leaves the set; in wait mode the discovery call is
enqueued once the set is empty, under one coalesced job id, in race mode after every
completion.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from mainspring.engine.backoff import Backoff
from mainspring.engine.clock import Clock
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import Job, JobKind, RunStatus
from mainspring.engine.run_state import ActiveRun, LazyMemos, StackView
from mainspring.engine.store.contract import Store, Tx
from mainspring.engine.transport import Transport
from mainspring.protocol import consts
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    ErrorPayload,
    Failure,
    Ops,
    StepOp,
)
from mainspring.protocol.opcodes import LAZY_OPS, PLAN_TYPE_OPS, Opcode, ParallelMode
from mainspring.sdk.serialize import error_payload

#: Sleeps and waits are capped at 366 days (protocol §8.1).
MAX_SLEEP_MS = 366 * 86_400_000

FinishedHook = Callable[
    [Tx, "ActiveRun", RunStatus, bytes | None, dict[str, Any] | None], list[Job]
]


class _Unit:
    """Builds one store unit for a response: DB writes now, memory changes after them."""

    def __init__(self, tx: Tx, run: ActiveRun, job: Job, now: int) -> None:
        self.tx = tx
        self.run = run
        self.job = job
        self.now = now
        #: Jobs written by this unit, to put on the in-memory queue once it commits.
        self.jobs: list[Job] = []
        self.follow_ups: list[Job] = []
        self.after: list[Callable[[], None]] = []
        #: Columns of the run row to update, written once at the end of the unit.
        self.run_fields: dict[str, Any] = {}
        #: Whether this unit created a pending set (the run's flag is updated after it).
        self.grouped = False
        #: Follow-up ids that cannot exist yet, so settling skips the existence check.
        self.fresh_ids: set[str] = set()
        #: Steps this unit records, in order: the next one's position is after them.
        self.saved = 0
        self.finished: RunStatus | None = None

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
        for job in follow_ups:
            if tx.enqueue(job):
                self.jobs.append(job)

    def commit_memory(self) -> None:
        fields = self.run_fields
        if self.finished is not None:
            fields.pop("status", None)  # the final status is already written
        if fields:
            self.tx.update_run(self.run.run_id, **fields)
        for change in self.after:
            change()


class Executor:
    """Runs jobs; owns the cache of active runs."""

    def __init__(
        self,
        *,
        store: Store,
        transport: Transport,
        queue: JobQueue,
        clock: Clock,
        backoff: Backoff,
        step_limit: int,
        on_finished: FinishedHook,
        on_settled: Callable[[str], None],
    ) -> None:
        self._store = store
        self._transport = transport
        self._queue = queue
        self._clock = clock
        self._backoff = backoff
        self._step_limit = step_limit
        self._on_finished = on_finished
        self._on_settled = on_settled
        self._runs: dict[str, ActiveRun] = {}

    def active(self, run_id: str) -> ActiveRun | None:
        return self._runs.get(run_id)

    def adopt(self, run: ActiveRun) -> None:
        """Cache a run the engine just created (saves a read on its first job)."""
        self._runs[run.run_id] = run

    async def _load(self, run_id: str) -> ActiveRun | None:
        run = self._runs.get(run_id)
        if run is None:
            state = await self._store.load_run_state(run_id)
            if state is None:
                return None
            run = self._runs.setdefault(run_id, ActiveRun(state))
        return run

    # -- one job -----------------------------------------------------------------

    async def run_job(self, job: Job) -> Job | None:
        """Run one job; returns a follow-up job of the same run that is due now, if any.

        The caller runs the follow-up itself instead of queueing it: a run of sequential
        steps then moves from step to step without a trip through the queue.
        """
        run = await self._load(job.run_id)
        if run is None or run.status.finished:
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return None
        if job.kind is JobKind.PLAN and job.step_id in run.memos:
            # Already recorded (a race-mode re-plan, or a retry that raced its result).
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return None
        if job.kind is JobKind.SLEEP:
            return await self._record(run, job, lambda unit: self._wake(unit))
        started = self._clock.now_ms()
        request = CallRequest(
            fn_id=run.function_id,
            event=run.events[0],
            events=run.events,
            steps=LazyMemos(run.memos),
            ctx=CallContext(
                run_id=run.run_id,
                attempt=job.attempt,
                max_attempts=run.max_attempts,
                stack=StackView(run.stack),
                disable_immediate_execution=run.force_step_plan,
                fn_id=run.function_id,
            ),
            step_id=job.step_id if job.kind is JobKind.PLAN else None,
            version=run.request_version,
        )
        try:
            response: CallResponse = await self._transport.call(request)
        except Exception as exc:  # a transport fault is a failed, retriable attempt
            response = Failure(error_payload(exc))
        return await self._record(run, job, lambda unit: self._apply(unit, response, started))

    async def _record(self, run: ActiveRun, job: Job, build: Callable[[_Unit], None]) -> Job | None:
        now = self._clock.now_ms()

        def unit_fn(tx: Tx) -> _Unit:
            unit = _Unit(tx, run, job, now)
            if run.status.finished:  # cancelled while the call was in flight
                tx.delete_job(job.id)
                return unit
            build(unit)
            unit.commit_memory()
            return unit

        try:
            unit = await self._store.transact(unit_fn)
        except BaseException:
            # The memory copy may be ahead of what was committed: start over from disk.
            self._runs.pop(run.run_id, None)
            self._transport.forget(run.run_id)
            raise
        if unit.finished is not None:
            self._runs.pop(run.run_id, None)
            self._transport.forget(run.run_id)
            self._on_settled(run.run_id)
        jobs = unit.jobs
        if len(jobs) == 1 and jobs[0].run_id == run.run_id and jobs[0].run_at <= now:
            return jobs[0]
        for queued in jobs:
            self._queue.push(queued)
        return None

    # -- applying a response -------------------------------------------------------

    def _apply(self, unit: _Unit, response: CallResponse, started: int) -> None:
        run, job = unit.run, unit.job
        if run.started_at is None:
            unit.run_fields.update(status=RunStatus.RUNNING.value, started_at=started)

            def mark_started() -> None:
                run.started_at = started
                run.status = RunStatus.RUNNING

            unit.after.append(mark_started)
        if isinstance(response, Complete):
            self._finish(unit, RunStatus.COMPLETED, output=response.output)
        elif isinstance(response, Failure):
            if response.retriable and job.attempt + 1 < run.max_attempts:
                self._retry(unit, response.retry_after)
            else:
                self._finish(unit, RunStatus.FAILED, error=response.error)
        else:
            self._apply_ops(unit, response)

    def _retry(self, unit: _Unit, retry_after: datetime.datetime | None) -> None:
        job = unit.job
        if retry_after is not None:
            at = int(retry_after.timestamp() * 1000)
            # Clamped to [now+1s, now+24h] (protocol §3.4).
            at = min(max(at, unit.now + 1000), unit.now + 86_400_000)
        else:
            at = unit.now + int(self._backoff(job.attempt) * 1000)
        unit.tx.reschedule_job(job.id, run_at=at, attempt=job.attempt + 1)
        unit.jobs.append(
            Job(
                id=job.id,
                run_id=job.run_id,
                kind=job.kind,
                run_at=at,
                step_id=job.step_id,
                attempt=job.attempt + 1,
                priority=job.priority,
                data=job.data,
            )
        )

    def _apply_ops(self, unit: _Unit, response: Ops) -> None:
        run, tx = unit.run, unit.tx
        ops = [op for op in response.ops if op.op not in LAZY_OPS]
        if not ops:
            self._finish(
                unit,
                RunStatus.FAILED,
                error=ErrorPayload(
                    name="ProtocolError", message="the SDK answered 206 with no ops"
                ),
            )
            return
        if run.request_version == -1:
            unit.run_fields["request_version"] = consts.REQUEST_VERSION
            unit.after.append(lambda: setattr(run, "request_version", consts.REQUEST_VERSION))
        state = _OpsState(run)
        if len(ops) > 1:
            state.force = True
            if any(op.op in PLAN_TYPE_OPS for op in ops):
                ids = sorted(op.id for op in ops)
                state.coalesce = hashlib.sha1(
                    (run.run_id + "".join(ids)).encode(), usedforsecurity=False
                ).hexdigest()[:16]
                state.grouped = unit.grouped = True
                tx.set_pending(run.run_id, ids, state.coalesce)
        retry_at: datetime.datetime | None = None
        retry = False
        new_steps = sum(1 for op in ops if op.op is Opcode.STEP_RUN)
        if len(run.stack) + new_steps > self._step_limit:
            self._finish(
                unit,
                RunStatus.FAILED,
                error=ErrorPayload(
                    name="StepLimitError",
                    message=f"the run exceeded its limit of {self._step_limit} steps",
                    code=ErrorCode.STEP_LIMIT,
                ),
            )
            return
        for op in ops:
            if op.op is Opcode.STEP_RUN:
                data = op.data if op.data is not None else b"null"
                self._save(unit, state, op, b'{"data":' + data + b"}")
            elif op.op is Opcode.STEP_ERROR and not (
                response.no_retry or unit.job.attempt + 1 >= run.max_attempts
            ):
                retry = True
                retry_at = response.retry_after
            elif op.op in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
                error = op.error or ErrorPayload(name="Error", message="step failed")
                self._save(unit, state, op, orjson.dumps({"error": error.to_wire()}), failure=True)
            elif op.op is Opcode.STEP_PLANNED:
                if op.id not in run.memos:
                    unit.enqueue(
                        Job(
                            id=f"{run.function_id}:{run.run_id}-{op.id}-plan",
                            run_id=run.run_id,
                            kind=JobKind.PLAN,
                            run_at=unit.now,
                            step_id=op.id,
                            # The group's mode travels with the job (protocol §7.2).
                            data={"mode": op.parallel_mode} if op.parallel_mode else None,
                        )
                    )
            elif op.op is Opcode.SLEEP:
                if not self._sleep(unit, op):
                    return
            else:
                self._finish(
                    unit,
                    RunStatus.FAILED,
                    error=ErrorPayload(
                        name="UnsupportedOpcodeError",
                        message=(
                            f"step {op.display_name or op.id!r}: the embedded engine does not "
                            f"support {op.op.value} yet"
                        ),
                        code=ErrorCode.OPCODE_UNSUPPORTED,
                    ),
                )
                return
        if retry:
            self._retry(unit, retry_at)
        unit.settle_jobs(keep_current=retry)
        state.write(unit)

    def _save(
        self, unit: _Unit, state: _OpsState, op: StepOp, memo: bytes, *, failure: bool = False
    ) -> None:
        if self._record_step(unit, state, op.id, memo, op.user_id or op.display_name, op.op.value):
            mode = op.parallel_mode
            if mode is None and unit.job.data is not None and unit.job.step_id == op.id:
                job_mode = unit.job.data.get("mode")
                mode = job_mode if isinstance(job_mode, str) else None
            self._maybe_discover(unit, state, op.id, mode, state.has_pending, failure=failure)

    def _record_step(
        self, unit: _Unit, state: _OpsState, step_id: str, memo: bytes, user_id: str, op: str
    ) -> bool:
        """Save one step's memo; False if it was recorded before (the first result stands)."""
        run = unit.run
        inserted, state.has_pending = unit.tx.save_step(
            run.run_id,
            step_id,
            memo,
            seq=len(run.stack) + unit.saved + 1,
            user_id=user_id,
            op=op,
            at=unit.now,
            grouped=state.grouped,
        )
        if not inserted:
            return False
        unit.saved += 1
        if not state.has_pending:
            state.grouped = False

        def remember() -> None:
            run.memos[step_id] = memo
            run.stack.append(step_id)

        unit.after.append(remember)
        return True

    def _maybe_discover(
        self,
        unit: _Unit,
        state: _OpsState,
        step_id: str,
        mode: str | None,
        has_pending: bool,
        *,
        failure: bool = False,
    ) -> None:
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

    def _sleep(self, unit: _Unit, op: StepOp) -> bool:
        duration = (op.opts or {}).get("duration")
        try:
            wake = _wake_time(
                duration if isinstance(duration, str) and duration else op.name, unit.now
            )
        except DurationError as exc:
            self._finish(
                unit,
                RunStatus.FAILED,
                error=ErrorPayload(name="SleepError", message=f"step {op.display_name!r}: {exc}"),
            )
            return False
        if wake - unit.now > MAX_SLEEP_MS:
            self._finish(
                unit,
                RunStatus.FAILED,
                error=ErrorPayload(
                    name="TimeoutTooLongError",
                    message=f"step {op.display_name!r}: sleeps are limited to 366 days",
                    code=ErrorCode.TIMEOUT_TOO_LONG,
                ),
            )
            return False
        run = unit.run
        unit.enqueue(
            Job(
                id=f"{run.function_id}:{run.run_id}-{op.id}-sleep",
                run_id=run.run_id,
                kind=JobKind.SLEEP,
                run_at=max(wake, unit.now),
                step_id=op.id,
                data={"user_id": op.user_id or op.display_name, "mode": op.parallel_mode},
            )
        )
        return True

    def _wake(self, unit: _Unit) -> None:
        run, job = unit.run, unit.job
        data = job.data or {}
        assert job.step_id is not None
        state = _OpsState(run)
        if self._record_step(
            unit, state, job.step_id, b"null", str(data.get("user_id", "")), "Sleep"
        ):
            mode = data.get("mode")
            self._maybe_discover(
                unit, state, job.step_id, mode if isinstance(mode, str) else None, state.has_pending
            )
        unit.settle_jobs(keep_current=False)
        state.write(unit)

    def _finish(
        self,
        unit: _Unit,
        status: RunStatus,
        *,
        output: bytes | None = None,
        error: ErrorPayload | None = None,
    ) -> None:
        run, tx = unit.run, unit.tx
        error_json = None if error is None else orjson.dumps(error.to_wire())
        finished = tx.finish_run(
            run.run_id,
            status,
            output=output,
            error=error_json,
            at=unit.now,
            grouped=run.grouped or unit.grouped,
        )
        unit.follow_ups.clear()
        if not finished:  # it finished another way meanwhile (a cancellation)
            tx.delete_job(unit.job.id)
            return
        unit.jobs.extend(
            self._on_finished(tx, run, status, output, None if error is None else error.to_wire())
        )
        unit.finished = status
        unit.after.append(lambda: setattr(run, "status", status))


class _OpsState:
    """Run flags one response may change: written with the unit, remembered after it."""

    __slots__ = ("coalesce", "force", "grouped", "has_pending")

    def __init__(self, run: ActiveRun) -> None:
        self.force = run.force_step_plan
        self.coalesce = run.coalesce_key
        self.grouped = run.grouped
        self.has_pending = False

    def write(self, unit: _Unit) -> None:
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


def _wake_time(text: str, now: int) -> int:
    """A sleep's wake time: an ISO date (the reference SDK's ``name``) or a time string."""
    if len(text) >= 10:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            return int(moment.timestamp() * 1000)
    return now + int(parse_duration_ms(text))
