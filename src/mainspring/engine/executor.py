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

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import orjson

from mainspring.engine import ai_gateway, deadlines, drift, plans, waits
from mainspring.engine.backoff import Backoff
from mainspring.engine.checkpoint import Checkpoints
from mainspring.engine.clock import Clock
from mainspring.engine.held import HeldRuns
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import Job, JobKind, RunStatus
from mainspring.engine.run_state import ActiveRun, LazyMemos, StackView
from mainspring.engine.runlog import RunLog
from mainspring.engine.store.contract import LeaseLostError, Store, Tx
from mainspring.engine.transport import Transport
from mainspring.engine.unit import (
    ChainedStep,
    Emitter,
    OpsState,
    Unit,
    maybe_discover,
    record_chain,
    record_step,
)
from mainspring.protocol import consts
from mainspring.protocol.codes import ErrorCode
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
from mainspring.protocol.opcodes import LAZY_OPS, PLAN_TYPE_OPS, Opcode
from mainspring.sdk.serialize import error_payload

#: Ops whose step the engine itself brings to an end (timers and pauses).
_WAIT_OPS = {
    Opcode.SLEEP: waits.schedule_sleep,
    Opcode.WAIT_FOR_EVENT: waits.create_wait,
    Opcode.INVOKE_FUNCTION: waits.create_invoke,
}

#: Jobs that record a result without calling the function.
_ENGINE_JOBS = {
    JobKind.SLEEP: waits.wake,
    JobKind.RESUME: waits.resume,
    JobKind.PAUSE_TIMEOUT: waits.pause_timeout,
}

#: Ops of a response that are not steps.
_NOT_STEPS = frozenset({Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST})

#: ``op`` of a history entry for a failed call of the function itself (not of one step).
FUNCTION_ERROR_OP = "FunctionError"

FinishedHook = Callable[
    [Tx, "ActiveRun", RunStatus, bytes | None, dict[str, Any] | None], list[Job]
]


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
        emitter: Emitter,
        on_settled: Callable[[str], None],
        held: HeldRuns | None = None,
        version_of: Callable[[str], str | None] | None = None,
        run_log: RunLog | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._queue = queue
        self._clock = clock
        self._backoff = backoff
        self._step_limit = step_limit
        self._on_finished = on_finished
        self._emitter = emitter
        self._on_settled = on_settled
        self._held = held
        #: The app version serving a function now (None: the app has none).
        self._version_of = version_of or (lambda _function_id: None)
        #: The lines said about runs (started, finished, failed attempts).
        self._log = run_log or RunLog()
        self._runs: dict[str, ActiveRun] = {}
        #: Jobs of each run being handled now (a parked run is evicted only when idle).
        self._busy: dict[str, int] = {}
        #: Other processes share the database: a run's copy is kept only while this
        #: process holds a job of the run (engine/claims.py): no other process can then
        #: take the run's jobs, so no other writes its steps. Then another may take it over.
        self._shared = bool(getattr(store, "shared", False))
        #: Runs whose last unit here queued a job of theirs this process holds.
        self._holding: set[str] = set()
        #: The calls in flight, and the steps checkpointing SDKs record during them.
        self.checkpoints = Checkpoints(
            store=store,
            clock=clock,
            emitter=emitter,
            run_log=self._log,
            step_limit=step_limit,
            version_of=self._version_of,
        )

    def active(self, run_id: str) -> ActiveRun | None:
        return self._runs.get(run_id)

    def adopt(self, run: ActiveRun) -> None:
        """Cache a run the engine just created (saves a read on its first job)."""
        self._runs[run.run_id] = run

    def forget_run(self, run_id: str) -> None:
        """Drop the cached state of a run changed outside the executor (a batch that
        closed, a run flow control skipped): its next job reads it from the store."""
        if self._busy.get(run_id):
            return  # a job of it is running: its own unit keeps the cache right
        self._runs.pop(run_id, None)

    async def load(self, run_id: str) -> ActiveRun | None:
        """The run's state, cached or read from the store."""
        return await self._load(run_id)

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
        busy = self._busy
        busy[job.run_id] = busy.get(job.run_id, 0) + 1
        follow: Job | None = None
        try:
            follow = await self._run_job(job)
            return follow
        finally:
            left = busy[job.run_id] - 1
            if left:
                busy[job.run_id] = left
            else:
                del busy[job.run_id]
                holding = job.run_id in self._holding
                self._holding.discard(job.run_id)
                if self._shared and follow is None and not holding:
                    self._runs.pop(job.run_id, None)

    async def _run_job(self, job: Job) -> Job | None:
        run = await self._load(job.run_id)
        if run is None or run.status.finished:
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return None
        if job.kind is JobKind.START and job.attempt == 0 and run.started_at is not None:
            # A stale copy of a start job that was moved (a batch that filled): the run
            # started from the other copy, and this job's row is its next job by now.
            return None
        if job.kind is JobKind.PLAN and job.step_id in run.memos:
            # Already recorded (a race-mode re-plan, or a retry that raced its result).
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return None
        if job.kind in _ENGINE_JOBS:
            return await self._record(run, job, _ENGINE_JOBS[job.kind])
        if job.kind is JobKind.CANCEL:
            return await self._record(run, job, self._cancel)
        late = deadlines.overdue(
            self._emitter.function(run.function_id), run, job, self._clock.now_ms()
        )
        if late is not None:
            return await self._record(
                run, job, lambda unit: self._finish(unit, RunStatus.CANCELLED, error=late)
            )
        if job.kind is JobKind.TIMEOUT:
            # A deadline the run met (it started in time): nothing to call.
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return None
        started = self._clock.now_ms()
        first = run.started_at is None
        if not first:
            return await self._call(run, job, started, first=False)
        # Running from the moment its first call goes out (recorded with its answer).
        run.started_at = started
        run.status = RunStatus.RUNNING
        try:
            return await self._call(run, job, started, first=True)
        except BaseException:
            # Memory says started and the store may not (the job is retried, or runs on
            # the next start): read the run from the store again, or its start job would
            # look like a stale copy and the run would wait for ever.
            self._runs.pop(run.run_id, None)
            self._transport.forget(run.run_id)
            raise

    async def _call(self, run: ActiveRun, job: Job, started: int, *, first: bool) -> Job | None:
        """Call the function for ``job`` and record its answer in one unit."""
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
                job_id=job.id,
                # Deterministic per dispatch, and free: no id generation on a step's path.
                request_id=f"{job.id}:{job.attempt}",
                step_ops=run.kinds,
                step_versions=self._older_versions(run),
            ),
            # A planned step's call, or a retry of a step that failed (drift.targeted_retry).
            step_id=job.step_id,
            version=run.request_version,
            plans_allowed=plans.allowed_for(self._emitter.function(run.function_id)),
        )
        call = self.checkpoints.begin(
            run, job, started, first=first, request_id=request.ctx.request_id
        )
        try:
            response: CallResponse = await self._transport.call(request)
        except Exception as exc:  # a transport fault is a failed, retriable attempt
            response = Failure(error_payload(exc))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the engine is stopping: the job runs again on the next start
            # Raised inside the call (a middleware, say) with no one cancelling it: a
            # failed attempt too. Let through, it would end the job with no record while
            # the run in memory counts as started, and the run would wait for ever.
            response = Failure(error_payload(exc))
        finally:
            recording = self.checkpoints.end(call)
        if recording is not None:  # a checkpoint of this call may be being recorded
            async with recording:
                pass
        # Steps it checkpointed during the call are recorded already (engine/checkpoint.py).
        response = self.checkpoints.settle(call, response)
        # An AI step's provider call, made here between the call and its unit.
        response = await ai_gateway.resolve(response)
        if self._held is not None:
            # A missing function holds the run instead of failing it (engine/held.py).
            hold = await self._held.check(run, job, response, first=first)
            if hold is not None:
                return await self._record(run, job, lambda unit: hold(unit, self._finish))
        return await self._record(
            run, job, lambda unit: self._apply(unit, response, started, first=first)
        )

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run now; False if it had already finished (or does not exist).

        The run takes no further step; a call in flight finishes but its result is
        discarded, since the run is finished when it comes back.
        """
        run = await self._load(run_id)
        if run is None or run.status.finished:
            return False
        # A job that exists only for this unit: cancelling consumes no queued job.
        job = Job(id=f"{run_id}-cancel-now", run_id=run_id, kind=JobKind.CANCEL, run_at=0)
        await self._record(run, job, self._cancel, stored=False)
        return True

    def _cancel(self, unit: Unit) -> None:
        why = (unit.job.data or {}).get("reason")
        message = why if isinstance(why, str) else "run cancelled"
        self._finish(unit, RunStatus.CANCELLED, error=ErrorPayload("Cancelled", message))

    async def _record(
        self, run: ActiveRun, job: Job, build: Callable[[Unit], None], *, stored: bool = True
    ) -> Job | None:
        """Record what ``build`` makes of the job, in one unit. ``stored``: the job has a
        row in the store (all but the cancellation made on the spot)."""
        now = self._clock.now_ms()

        version = self._version_of(run.function_id)

        def unit_fn(tx: Tx) -> Unit:
            unit = Unit(tx, run, job, now, self._emitter)
            unit.app_version = version
            if run.status.finished:  # cancelled while the call was in flight
                tx.delete_job(job.id)
                return unit
            if stored and not tx.holds_job(job.id, run.run_id):
                # Shared database: another process took the job over (this one's lease
                # ran out), or finished the run (cancelled it): record nothing.
                raise LeaseLostError(
                    f"job {job.id} of run {run.run_id} was taken over or its run finished "
                    "by another process"
                )
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
        for note in unit.notes:  # committed: say what it recorded
            note()
        if unit.finished is not None:
            self._runs.pop(run.run_id, None)
            self._transport.forget(run.run_id)
            self._on_settled(run.run_id)
        elif unit.stale:
            self._transport.forget(run.run_id)
        elif unit.parked and self._busy.get(run.run_id, 0) <= 1:
            # Only timers and pauses remain: free the run's memory (its state and the
            # suspended function) until they fire; the next call replays from the store.
            self._runs.pop(run.run_id, None)
            self._transport.forget(run.run_id)
        jobs = unit.jobs
        if (
            len(jobs) == 1
            and jobs[0].run_id == run.run_id
            and jobs[0].run_at <= now
            and self._queue.owns(jobs[0].id)
        ):
            return jobs[0]
        for queued in jobs:
            self._queue.push(queued)
            if queued.run_id == run.run_id and self._queue.owns(queued.id):
                self._holding.add(run.run_id)
        return None

    # -- applying a response -------------------------------------------------------

    def _apply(self, unit: Unit, response: CallResponse, started: int, *, first: bool) -> None:
        run, job = unit.run, unit.job
        unit.started = started
        if first:
            unit.run_fields.update(status=RunStatus.RUNNING.value, started_at=started)
            if unit.app_version is not None:
                unit.run_fields["app_version"] = unit.app_version

            def mark_started() -> None:
                run.started_at = started
                run.status = RunStatus.RUNNING

            unit.after.append(mark_started)
            self._log.started(unit)
            self._arm_finish_timeout(unit, started)
        if isinstance(response, (Complete, Ops)) and response.drift is not None:
            drift.note_code_changed(unit, response.drift, returned=isinstance(response, Complete))
        if isinstance(response, Complete):
            if drift.targeted_step_unreached(unit):
                # A call targeting one step may skip the others (the official SDKs do):
                # its output is not the function's. Ask again, untargeted.
                drift.drop_unreached_step(unit, "The function returned without it.")
                return
            self._finish(unit, RunStatus.COMPLETED, output=response.output)
        elif isinstance(response, Failure):
            if job.step_id is not None and drift.is_missing_step(response.error):
                drift.drop_unreached_step(unit, "The SDK said: " + response.error.message)
                return
            self._record_failed_call(unit, response.error)
            if response.retriable and job.attempt + 1 < run.max_attempts:
                at = self._retry(unit, response.retry_after)
                self._log.attempt_failed(unit, response.error, step=_step_name(job), retry_at=at)
            else:
                self._finish(unit, RunStatus.FAILED, error=response.error)
        else:
            self._apply_ops(unit, response)

    def _older_versions(self, run: ActiveRun) -> dict[str, str] | None:
        """Recorded steps of ``run`` whose app version is not the one serving it now."""
        if not run.versions:
            return None
        now = self._version_of(run.function_id)
        return {step_id: v for step_id, v in run.versions.items() if v != now} or None

    def _record_failed_call(self, unit: Unit, error: ErrorPayload) -> None:
        """Keep a failed call of the function itself in the run's history.

        A function-level failure (an error thrown outside steps, or an app that refused the
        connection, timed out or did not answer as an SDK) belongs to no step, yet each
        attempt's reason must stay readable after later attempts succeed. It is filed
        under the targeted step, or ``step@<n>`` for a discovery call after ``n`` recorded
        steps: attempts restart at 0 for each new job, so a bare ``step`` would collide.
        """
        run, job = unit.run, unit.job
        position = len(run.stack)
        unit.tx.record_attempt(
            run.run_id,
            job.step_id or f"step@{position}",
            attempt=job.attempt,
            after_seq=position,
            user_id="",
            op=FUNCTION_ERROR_OP,
            started_at=unit.started,
            ended_at=unit.now,
            error=orjson.dumps(error.to_wire()),
        )

    def _arm_finish_timeout(self, unit: Unit, started: int) -> None:
        """Cancel the run at ``started + timeouts.finish`` unless it is over by then."""
        job = deadlines.finish_deadline(
            self._emitter.function(unit.run.function_id), unit.run, started
        )
        if job is not None and unit.tx.enqueue(job):
            unit.jobs.append(job)

    def _retry(
        self, unit: Unit, retry_after: datetime.datetime | None, failed: StepOp | None = None
    ) -> int:
        """Run ``unit.job`` again after its backoff; after a step's failure (``failed``),
        as a call targeted at that step (``drift.targeted_retry``). Returns when."""
        job = unit.job
        at = _retry_time(unit, retry_after, self._backoff(job.attempt))
        if failed is not None and failed.id != job.step_id:
            user_id = failed.user_id or failed.display_name
            again = drift.targeted_retry(job, step_id=failed.id, user_id=user_id, run_at=at)
            unit.tx.repurpose_job(job.id, again)
        else:
            unit.tx.reschedule_job(job.id, run_at=at, attempt=job.attempt + 1)
            again = Job(
                id=job.id,
                run_id=job.run_id,
                kind=job.kind,
                run_at=at,
                step_id=job.step_id,
                attempt=job.attempt + 1,
                priority=job.priority,
                data=job.data,
            )
        unit.jobs.append(again)
        return at

    def _apply_ops(self, unit: Unit, response: Ops) -> None:
        run, tx = unit.run, unit.tx
        ops = [op for op in response.ops if op.op not in LAZY_OPS]
        # RunComplete: the function returned right after the steps of this response.
        complete = next((op for op in ops if op.op is Opcode.RUN_COMPLETE), None)
        # DiscoveryRequest: a checkpointing SDK ran out of its max runtime and asks to be
        # called again (protocol §13); steps it reports alongside queue that call anyway.
        rediscover = any(op.op is Opcode.DISCOVERY_REQUEST for op in ops)
        ops = [op for op in ops if op.op not in _NOT_STEPS]
        if not ops and complete is not None:
            self._finish(unit, RunStatus.COMPLETED, output=complete.data or b"null")
            return
        if not ops and rediscover:
            unit.enqueue(
                Job(
                    id=f"{run.run_id}-rediscover",
                    run_id=run.run_id,
                    kind=JobKind.DISCOVER,
                    run_at=unit.now,
                )
            )
            unit.settle_jobs(keep_current=False)
            return
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
            # The version the SDK answered with is the run's from now on, echoed on its
            # later calls (protocol §13); ours when it says none.
            answered = response.request_version
            version = consts.REQUEST_VERSION if answered is None else answered
            unit.run_fields["request_version"] = version
            unit.after.append(lambda: setattr(run, "request_version", version))
        if drift.targeted_step_unreached(unit, ops):
            drift.note_unreached_step(unit, "The function went on to other steps.")
            tx.drop_pending(run.run_id, unit.job.step_id or "")
        state = OpsState(run)
        chained = plans.is_chain(ops)
        if len(ops) > 1 and not chained:
            state.force = True
            if any(op.op in PLAN_TYPE_OPS for op in ops):
                ids = sorted(op.id for op in ops)
                state.coalesce = plans.batch_key(run.run_id, ids)
                state.grouped = unit.grouped = True
                tx.set_pending(
                    run.run_id, ids, state.coalesce, after_seq=len(run.stack) + unit.saved
                )
        retry_at: datetime.datetime | None = None
        retry = False
        failed_step: StepOp | None = None
        failed_error: ErrorPayload | None = None
        # Several failed steps: a plan's, answered together (engine/plans.py); each is
        # retried on its own, and one call follows them all.
        failed = [op for op in ops if op.op in plans.FAILED_OPS] if chained else []
        several_failed = len(failed) > 1
        retried_alone: list[StepOp] = []
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
        last = ops[-1]
        recorded_before = len(run.stack) + unit.saved
        if chained:
            # Steps that ran one after another: recorded in that order (in one statement
            # where the store can), and only the record of the last one calls the
            # function again.
            record_chain(
                unit,
                state,
                [
                    ChainedStep(
                        op.id,
                        _memo(op),
                        op.user_id or op.display_name,
                        op.op.value,
                        *_step_times(unit, op),
                    )
                    for op in ops
                    if op.op is Opcode.STEP_RUN and op is not last
                ],
            )
            if response.plans:
                plans.file_plans(unit, response, recorded_before)
            if several_failed:
                plans.await_failed(unit, state, failed)
        for op in ops:
            if op.op is Opcode.STEP_RUN:
                if not (chained and op is not last):
                    self._save(unit, state, op, _memo(op))
            elif op.op is Opcode.STEP_ERROR and not (
                response.no_retry or unit.job.attempt + 1 >= run.max_attempts
            ):
                error = op.error or ErrorPayload(name="Error", message="step failed")
                if several_failed:
                    retried_alone.append(op)
                else:
                    retry = True
                    retry_at = response.retry_after
                    failed_step = op
                    failed_error = error
                tx.record_attempt(
                    run.run_id,
                    op.id,
                    attempt=unit.job.attempt,
                    after_seq=len(run.stack) + unit.saved,
                    user_id=op.user_id or op.display_name,
                    op=op.op.value,
                    started_at=unit.started,
                    ended_at=unit.now,
                    error=orjson.dumps(error.to_wire()),
                )
            elif op.op in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
                error = op.error or ErrorPayload(name="Error", message="step failed")
                self._save(unit, state, op, orjson.dumps({"error": error.to_wire()}), failure=True)
                self._log.attempt_failed(unit, error, step=_op_name(op), retry_at=None)
            elif op.op is Opcode.STEP_PLANNED:
                if op.id not in run.memos:
                    unit.enqueue(
                        Job(
                            id=f"{run.function_id}:{run.run_id}-{op.id}-plan",
                            run_id=run.run_id,
                            kind=JobKind.PLAN,
                            run_at=unit.now,
                            step_id=op.id,
                            # The group's mode travels with the job (protocol §7.2);
                            # the step's name is for the run's trace while it is queued.
                            data={
                                "mode": op.parallel_mode,
                                "user_id": op.user_id or op.display_name,
                            },
                        )
                    )
            elif op.op in _WAIT_OPS:
                try:
                    problem = _WAIT_OPS[op.op](unit, state, op)
                except (TypeError, ValueError, AttributeError, KeyError) as exc:
                    # Opts of the wrong type from an app (a number where a time string
                    # goes): left to escape, this fails the whole unit, which the engine
                    # retries every second forever, recording nothing on the run.
                    problem = ErrorPayload(
                        name="ProtocolError",
                        message=(
                            f"step {op.display_name or op.id!r}: malformed {op.op.value} op "
                            f"(opts {op.opts!r:.200}): {type(exc).__name__}: {exc}"
                        ),
                    )
                if problem is not None:
                    self._finish(unit, RunStatus.FAILED, error=problem)
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
        if retried_alone:
            at = _retry_time(unit, response.retry_after, self._backoff(unit.job.attempt))
            for op in retried_alone:
                unit.enqueue(plans.retry_alone(unit, op, at))
                error = op.error or ErrorPayload(name="Error", message="step failed")
                self._log.attempt_failed(unit, error, step=_op_name(op), retry_at=at)
        if complete is not None:
            ran = sum(1 for op in ops if op.op is Opcode.STEP_RUN)
            if not (retry or retried_alone) and unit.saved == ran:
                self._finish(unit, RunStatus.COMPLETED, output=complete.data or b"null")
                return
            # A step it ran was recorded already (by a racing call): the output may rest
            # on a result that lost, so call the function again instead.
            unit.stale = True
        if retry:
            at = self._retry(unit, retry_at, failed_step)
            if failed_step is not None and failed_error is not None:
                step = _op_name(failed_step)
                self._log.attempt_failed(unit, failed_error, step=step, retry_at=at)
        unit.parked = all(op.op in _WAIT_OPS for op in ops)
        unit.settle_jobs(keep_current=retry)
        state.write(unit)

    def _save(
        self, unit: Unit, state: OpsState, op: StepOp, memo: bytes, *, failure: bool = False
    ) -> None:
        """Record a step's result and queue what follows it."""
        user_id = op.user_id or op.display_name
        start, end = _step_times(unit, op)
        kind = ai_gateway.recorded_op(op)  # an AI step's result is an AIGateway's
        if record_step(unit, state, op.id, memo, user_id, kind, started_at=start, ended_at=end):
            mode = op.parallel_mode
            if mode is None and unit.job.data is not None and unit.job.step_id == op.id:
                job_mode = unit.job.data.get("mode")
                mode = job_mode if isinstance(job_mode, str) else None
            maybe_discover(unit, state, op.id, mode, state.has_pending, failure=failure)

    def _finish(
        self,
        unit: Unit,
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
        self._log.finished(unit, status, error)


def _op_name(op: StepOp) -> str:
    """A reported step as the function named it."""
    return op.user_id or op.display_name or op.id


def _step_name(job: Job) -> str | None:
    """The step a job targets, as the function named it (None: an untargeted call)."""
    if job.step_id is None:
        return None
    name = (job.data or {}).get("user_id")
    return name if isinstance(name, str) and name else job.step_id


def _memo(op: StepOp) -> bytes:
    """A step's memo: its result's JSON under ``data``."""
    return b'{"data":' + (op.data if op.data is not None else b"null") + b"}"


def _step_times(unit: Unit, op: StepOp) -> tuple[int | None, int]:
    """When a step ran: as the SDK timed it, else the span of the call that ran it."""
    if op.timing is not None:
        return op.timing
    return unit.started, unit.now


def _retry_time(unit: Unit, retry_after: datetime.datetime | None, backoff: float) -> int:
    """When a failed attempt runs again: at ``Retry-After`` clamped to [now+1s, now+24h]
    (protocol §3.4), else after the backoff."""
    if retry_after is None:
        return unit.now + int(backoff * 1000)
    at = int(retry_after.timestamp() * 1000)
    return min(max(at, unit.now + 1000), unit.now + 86_400_000)
