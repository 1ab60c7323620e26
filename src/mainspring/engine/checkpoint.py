"""Async checkpoints: steps a call in flight records before it answers (protocol §13).

A checkpointing SDK (the official TypeScript SDK v4 by default) goes on running step after
step in one call, and records each step as it ends with
``POST /v1/checkpoint/{run_id}/async`` naming the call's queue item (``ctx.qi_id``: the
job id). This module is the engine's side of that route:

- :meth:`Checkpoints.begin` / :meth:`Checkpoints.end` bracket each call the executor
  makes, so that a checkpoint is accepted only from the call now running its job (an
  earlier attempt of the same job, or a call the executor gave up on, is stale: 409,
  which the SDK takes as "stop");
- :meth:`Checkpoints.record` records a checkpoint's steps in one store unit, as the
  executor records a chain of steps in a 206 (``StepRun`` in order, ``StepFailed`` as a
  failure memo), but queues nothing: the call goes on, and its final answer says what
  comes next. A crash before that answer loses nothing recorded: the job is still
  stored, and runs again as a discovery call that sees the checkpointed steps.
  ``StepPlanned`` and ``RunComplete`` only make sense when the call ends, so they are
  kept with the call and joined to its answer;
- :meth:`Checkpoints.settle` turns the call's answer into what the executor records:
  steps the answer repeats (an SDK that fell back after a checkpoint whose answer it
  lost) are dropped, so none is recorded twice and each recorded step still leads to
  the next call; an answer left with nothing asks for a discovery call.

In-memory run state changes only after the unit commits, so a failed checkpoint leaves
the run as the executor knows it; the SDK then answers the steps in its 206 instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

from mainspring.engine.clock import Clock
from mainspring.engine.records import Job, RunStatus
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.runlog import RunLog
from mainspring.engine.store.contract import Store, Tx
from mainspring.engine.unit import ChainedStep, Emitter, OpsState, Unit, record_chain, record_step
from mainspring.protocol import wire
from mainspring.protocol.messages import CallResponse, ErrorPayload, Failure, Ops, StepOp
from mainspring.protocol.opcodes import LAZY_OPS, Opcode

#: Ops recorded as soon as they are checkpointed.
_RECORDED = frozenset({Opcode.STEP_RUN, Opcode.STEP_FAILED})
#: Ops kept with the call until it answers (they say what follows the call).
_DEFERRED = frozenset({Opcode.STEP_PLANNED, Opcode.RUN_COMPLETE})
#: The most ops one checkpoint may carry (the SDK sends a few at a time).
MAX_OPS = 1000


class CheckpointRefused(Exception):
    """A checkpoint not recorded; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(eq=False, slots=True)
class Call:
    """One call of a function in flight, as checkpoints see it."""

    run: ActiveRun
    job: Job
    #: When the call went out (epoch ms), and whether it is the run's first.
    started: int
    first: bool
    #: ``x-request-id`` of this dispatch: an SDK's checkpoint names it.
    request_id: str
    open: bool = True
    #: Steps this call's checkpoints recorded: hashed id -> memo.
    recorded: dict[str, bytes] = dataclasses.field(default_factory=dict)
    #: Checkpointed ops that take effect with the call's answer.
    deferred: list[StepOp] = dataclasses.field(default_factory=list)
    #: When its last checkpoint was recorded: where the next step began.
    last_at: int = 0
    #: Made by the first checkpoint: checkpoints of one call are recorded one at a time.
    lock: asyncio.Lock | None = None


class Checkpoints:
    """The calls in flight of one executor, and the checkpoints they send."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        emitter: Emitter,
        run_log: RunLog,
        step_limit: int,
        version_of: Callable[[str], str | None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._emitter = emitter
        self._log = run_log
        self._step_limit = step_limit
        self._version_of = version_of
        #: Other processes may run the job (a shared database, a load balancer in front):
        #: a checkpoint that finds no call here is then refused without "stop" (400, so
        #: the SDK answers its steps in the 206) rather than as stale (409).
        self._shared = bool(getattr(store, "shared", False))
        self._calls: dict[str, Call] = {}

    # -- the executor's side -----------------------------------------------------------

    def begin(
        self, run: ActiveRun, job: Job, started: int, *, first: bool, request_id: str
    ) -> Call:
        """A call of ``job`` goes out now."""
        call = Call(run, job, started, first, request_id, last_at=started)
        self._calls[job.id] = call
        return call

    def end(self, call: Call) -> asyncio.Lock | None:
        """The call answered (or failed): later checkpoints of it are stale. Returns the
        lock of a checkpoint that may still be being recorded (None for a call that sent
        none, as every call of our SDK), for the executor to wait on before it applies
        the answer: every step's call goes through here, so no coroutine is made for it."""
        call.open = False
        if self._calls.get(call.job.id) is call:
            del self._calls[call.job.id]
        return call.lock

    def settle(self, call: Call, response: CallResponse) -> CallResponse:
        """The answer to record for a call whose checkpoints recorded steps."""
        if not call.recorded and not call.deferred:
            return response
        complete = next((op for op in call.deferred if op.op is Opcode.RUN_COMPLETE), None)
        if isinstance(response, Failure):
            # The function returned (it said so): a failure after that (a dropped
            # connection) does not undo it. Otherwise the call is retried as any call,
            # and the retry sees the checkpointed steps.
            return response if complete is None else Ops(ops=[complete])
        if not isinstance(response, Ops):
            return response  # 200: the function returned, with the steps recorded
        fresh = [
            op
            for op in response.ops
            if not (op.op in _RECORDED and op.id in call.recorded)
            and not (op.op is Opcode.STEP_PLANNED and any(op.id == d.id for d in call.deferred))
        ]
        planned = [op for op in call.deferred if op.op is Opcode.STEP_PLANNED]
        ops = planned + fresh
        if complete is not None and not any(op.op is Opcode.RUN_COMPLETE for op in ops):
            ops.append(complete)
        if not any(op.op not in LAZY_OPS for op in ops):
            # Every step it answered is recorded, and the function has not returned:
            # call it again to learn what follows.
            ops.append(StepOp(op=Opcode.DISCOVERY_REQUEST, id="", name="", display_name=""))
        if ops == response.ops:
            return response
        # Our SDK's plan ranges index the answer as sent; checkpointing SDKs send none.
        return dataclasses.replace(response, ops=ops, plans=[])

    # -- the API's side ------------------------------------------------------------------

    async def record(self, run_id: str, payload: Any) -> int:
        """Record one checkpoint (the route's body); returns how many steps it recorded
        that were not recorded before. Raises :class:`CheckpointRefused`."""
        if not isinstance(payload, dict):
            raise CheckpointRefused(400, "the body must be a JSON object")
        qi_id = payload.get("qi_id")
        if not isinstance(qi_id, str) or not qi_id:
            raise CheckpointRefused(400, "qi_id: expected the call's ctx.qi_id (a string)")
        if payload.get("run_id", run_id) != run_id:
            raise CheckpointRefused(400, "run_id: does not match the run in the path")
        call = self._call(run_id, qi_id, payload)
        ops = _parse(payload.get("steps"))
        if call.lock is None:
            call.lock = asyncio.Lock()
        async with call.lock:
            if not call.open:
                raise CheckpointRefused(*self._not_in_flight(run_id, qi_id))
            return await self._record(call, ops)

    def _call(self, run_id: str, qi_id: str, payload: dict[str, Any]) -> Call:
        call = self._calls.get(qi_id)
        if call is None or call.run.run_id != run_id:
            raise CheckpointRefused(*self._not_in_flight(run_id, qi_id))
        request_id = payload.get("request_id")
        if isinstance(request_id, str) and request_id and request_id != call.request_id:
            raise CheckpointRefused(
                409,
                f"stale dispatch: request {request_id!r} is not the attempt of queue item "
                f"{qi_id!r} running now ({call.request_id!r})",
            )
        fn_id = payload.get("fn_id")
        if isinstance(fn_id, str) and fn_id and fn_id != call.run.function_id:
            raise CheckpointRefused(
                400, f"fn_id: run {run_id} is of function {call.run.function_id!r}, not {fn_id!r}"
            )
        if call.job.step_id is not None:
            raise CheckpointRefused(
                400,
                f"queue item {qi_id!r} is a call targeting step {call.job.step_id!r}: only "
                "discovery calls (stepId=step) checkpoint; answer the step in the 206",
            )
        return call

    def _not_in_flight(self, run_id: str, qi_id: str) -> tuple[int, str]:
        if self._shared:
            return 400, (
                f"queue item {qi_id!r} of run {run_id} is not being called by this server "
                "process: answer the steps in the call's 206"
            )
        return 409, (
            f"stale dispatch: queue item {qi_id!r} of run {run_id} is not being called now "
            "(its call answered, timed out or the run finished)"
        )

    async def _record(self, call: Call, ops: list[StepOp]) -> int:
        run, job = call.run, call.job
        if run.status.finished:
            raise CheckpointRefused(409, f"run {run.run_id} is {run.status.value}: stop")
        new = [op for op in ops if op.op in _RECORDED and op.id not in run.memos]
        if len(run.stack) + len(new) > self._step_limit:
            raise CheckpointRefused(
                400,
                f"the run would exceed its limit of {self._step_limit} steps: answer the "
                "steps in the call's 206",
            )
        recorded = [op for op in ops if op.op in _RECORDED]
        now = self._clock.now_ms()
        version = self._version_of(run.function_id)

        def unit_fn(tx: Tx) -> Unit:
            if run.status.finished or not tx.job_exists(job.id):
                raise CheckpointRefused(409, f"run {run.run_id} finished meanwhile: stop")
            if not tx.holds_job(job.id, run.run_id):
                raise CheckpointRefused(
                    409, f"queue item {job.id!r} was taken over by another server process"
                )
            unit = Unit(tx, run, job, now, self._emitter)
            unit.app_version = version
            unit.started = call.started
            state = OpsState(run)
            self._write_steps(unit, state, call, recorded)
            state.write(unit)
            if call.first and run.started_at is not None:
                # The run shows as running from its first checkpoint, not its first answer.
                unit.run_fields.update(status=RunStatus.RUNNING.value, started_at=call.started)
            if unit.run_fields:
                tx.update_run(run.run_id, **unit.run_fields)
            return unit

        try:
            unit = await self._store.transact(unit_fn)
        except CheckpointRefused:
            raise
        except Exception as exc:  # the store failed: nothing was recorded
            raise CheckpointRefused(
                503, f"not recorded ({type(exc).__name__}: {exc}): send it again"
            ) from exc
        for change in unit.after:  # committed: memory follows
            change()
        for note in unit.notes:
            note()
        for op in recorded:
            memo = run.memos.get(op.id)
            if memo is not None:
                call.recorded[op.id] = memo
        call.deferred.extend(op for op in ops if op.op in _DEFERRED)
        call.last_at = now
        call.first = False
        return unit.saved

    def _write_steps(self, unit: Unit, state: OpsState, call: Call, ops: list[StepOp]) -> None:
        """Record ``ops`` in order: runs of ``StepRun`` as chains, failures on their own."""
        chain: list[ChainedStep] = []
        begun = call.last_at
        for op in ops:
            user_id = op.user_id or op.display_name
            start, end = op.timing if op.timing is not None else (begun, unit.now)
            if op.op is Opcode.STEP_RUN:
                memo = b'{"data":' + (op.data if op.data is not None else b"null") + b"}"
                chain.append(ChainedStep(op.id, memo, user_id, op.op.value, start, end))
                continue
            record_chain(unit, state, chain)
            chain = []
            error = op.error or ErrorPayload(name="Error", message="step failed")
            memo = orjson.dumps({"error": error.to_wire()})
            if record_step(
                unit, state, op.id, memo, user_id, op.op.value, started_at=start, ended_at=end
            ):
                self._log.attempt_failed(unit, error, step=user_id or op.id, retry_at=None)
        record_chain(unit, state, chain)


def _parse(steps: Any) -> list[StepOp]:
    """A checkpoint's ``steps``: the ops it may carry, in the 206 shape (§3.2)."""
    if not isinstance(steps, list) or not steps:
        raise CheckpointRefused(400, "steps: expected a non-empty array of ops")
    if len(steps) > MAX_OPS:
        raise CheckpointRefused(400, f"steps: more than {MAX_OPS} ops in one checkpoint")
    ops: list[StepOp] = []
    for index, raw in enumerate(steps):
        try:
            op = wire.parse_op(index, raw)
        except wire.WireError as exc:
            raise CheckpointRefused(400, str(exc).replace("206 body: ops", "steps", 1)) from None
        if op.op in LAZY_OPS:
            continue  # as in a 206: deferred work is not run by this engine
        if op.op not in _RECORDED and op.op not in _DEFERRED:
            raise CheckpointRefused(
                400,
                f"steps[{index}]: {op.op.value} cannot be checkpointed (only StepRun, "
                "StepFailed, StepPlanned and RunComplete): answer it in the call's 206",
            )
        if op.op in _RECORDED and op.parallel_mode is not None:
            raise CheckpointRefused(
                400,
                f"steps[{index}]: a step of a parallel group is not checkpointed: answer it "
                "in the call's 206",
            )
        if ops and ops[-1].op is Opcode.RUN_COMPLETE:
            raise CheckpointRefused(400, f"steps[{index}]: nothing may follow RunComplete")
        ops.append(op)
    return ops
