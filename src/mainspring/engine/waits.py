"""Steps the engine finishes itself: sleeps, waits for events, and their resumptions.

A sleep is a delayed job. A wait is a pause (indexed by event name) plus a timeout job;
the intake consumes the pause when a matching event arrives and queues a resume job, the
timeout job consumes it otherwise. Whichever deletes the pause first wins, so the step
gets exactly one result. Either way the result is recorded like any step's: the memo, the
pending set of its group, the discovery that follows (protocol §6.4, §7.2, §8.1, §8.2).
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from mainspring.engine.records import Job, JobKind, Pause, PauseKind
from mainspring.engine.unit import OpsState, Unit, record_and_discover
from mainspring.protocol import consts
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.protocol.expressions import ExpressionError, compile_expression, interpolate
from mainspring.protocol.match_keys import equality_key
from mainspring.protocol.messages import ErrorPayload, StepOp
from mainspring.sdk.event import Event

#: Sleeps and waits are capped at 366 days (protocol §8.1).
MAX_WAIT_MS = 366 * 86_400_000

#: Errors the engine writes itself carry ``stack: null``, as every stored error does.
INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
    "stack": None,
    "error": "Timed out waiting for invoked function to complete",
}


def _too_long(op: StepOp, what: str) -> ErrorPayload:
    return ErrorPayload(
        name="TimeoutTooLongError",
        message=f"step {op.display_name!r}: {what} are limited to 366 days",
        code=ErrorCode.TIMEOUT_TOO_LONG,
    )


def wake_time(text: str, now: int) -> int:
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


def schedule_sleep(unit: Unit, state: OpsState, op: StepOp) -> ErrorPayload | None:
    """Queue the wake-up of a ``Sleep`` op; an error payload if the op is invalid."""
    duration = (op.opts or {}).get("duration")
    try:
        wake = wake_time(duration if isinstance(duration, str) and duration else op.name, unit.now)
    except DurationError as exc:
        return ErrorPayload(name="SleepError", message=f"step {op.display_name!r}: {exc}")
    if wake - unit.now > MAX_WAIT_MS:
        return _too_long(op, "sleeps")
    run = unit.run
    unit.enqueue(
        Job(
            id=f"{run.function_id}:{run.run_id}-{op.id}-sleep",
            run_id=run.run_id,
            kind=JobKind.SLEEP,
            run_at=max(wake, unit.now),
            step_id=op.id,
            data={
                "user_id": op.user_id or op.display_name,
                "mode": op.parallel_mode,
                "since": unit.now,
            },
        )
    )
    return None


def create_wait(unit: Unit, state: OpsState, op: StepOp) -> ErrorPayload | None:
    """Pause the step of a ``WaitForEvent`` op until its event or its timeout."""
    opts = op.opts or {}
    name = opts.get("event") or op.name
    if not isinstance(name, str) or not name:
        return ErrorPayload(name="WaitError", message=f"step {op.display_name!r}: no event name")
    timeout = opts.get("timeout", "")
    try:
        # An empty timeout expires at once (protocol §8.2).
        expires = unit.now + (int(parse_duration_ms(timeout)) if timeout else 0)
    except DurationError as exc:
        return ErrorPayload(name="WaitError", message=f"step {op.display_name!r}: {exc}")
    if expires - unit.now > MAX_WAIT_MS:
        return _too_long(op, "waits")
    expression = opts.get("if")
    if expression is not None:
        try:
            # event.* is fixed now, from the run's triggering event; async.* stays open.
            expression = interpolate(str(expression), unit.run.events[0])
            compile_expression(expression)
        except ExpressionError as exc:
            return ErrorPayload(
                name="ExpressionError",
                message=f"step {op.display_name!r}: invalid wait condition: {exc}",
            )
    create_pause(
        unit,
        step_id=op.id,
        kind=PauseKind.WAIT,
        event_name=name,
        expression=expression,
        expires_at=expires,
        data={"user_id": op.user_id or op.display_name, "mode": op.parallel_mode},
    )
    return None


def create_invoke(unit: Unit, state: OpsState, op: StepOp) -> ErrorPayload | None:
    """Start the target of an ``InvokeFunction`` op and pause until it finishes (§8.5)."""
    run = unit.run
    opts = op.opts or {}
    target = opts.get("function_id")
    if not isinstance(target, str) or not target:
        return ErrorPayload(name="InvokeError", message=f"step {op.display_name!r}: no function_id")
    timeout = opts.get("timeout") or "366d"
    try:
        expires = unit.now + int(parse_duration_ms(str(timeout)))
    except DurationError as exc:
        return ErrorPayload(name="InvokeError", message=f"step {op.display_name!r}: {exc}")
    if expires - unit.now > MAX_WAIT_MS:
        return _too_long(op, "invokes")
    if op.id in run.memos:
        return None
    if unit.emitter.function(target) is None:
        # The reference finishes such an invoke at once with this error (§8.5).
        missing = ErrorPayload(name="Error", message=f"could not find function with ID: {target}")
        memo = orjson.dumps({"error": missing.to_wire()})
        record_and_discover(
            unit, state, op.id, memo, op.display_name, op.op.value, op.parallel_mode
        )
        return None
    correlation_id = f"{run.run_id}.{op.id}"
    payload = opts.get("payload") or {}
    data = dict(payload.get("data") or {}) if isinstance(payload, dict) else {}
    data["_inngest"] = {
        "fn_id": target,
        "correlation_id": correlation_id,
        "expire": expires,
        "name": op.display_name,
        "source_fn_id": run.function_id,
        "source_run_id": run.run_id,
    }
    expression = f'async.data.correlation_id == "{correlation_id}"'
    if not create_pause(
        unit,
        step_id=op.id,
        kind=PauseKind.INVOKE,
        event_name=consts.FUNCTION_FINISHED_EVENT,
        expression=expression,
        expires_at=expires,
        data={"user_id": op.user_id or op.display_name, "mode": op.parallel_mode},
    ):
        return None  # re-reported while the child runs: already started
    event = Event(name=consts.FUNCTION_INVOKED_EVENT, data=data)
    unit.jobs.extend(unit.emitter.emit(unit.tx, [event]))
    return None


def create_pause(
    unit: Unit,
    *,
    step_id: str,
    kind: PauseKind,
    event_name: str,
    expression: str | None,
    expires_at: int,
    data: dict[str, Any],
) -> bool:
    """Store a pause and the job that times it out; False if the step is already
    recorded or paused (a re-reported op)."""
    run = unit.run
    if step_id in run.memos:
        return False
    key = equality_key(expression) if expression is not None else None
    pause_id = f"{run.run_id}:{step_id}"
    timeout_job = f"{run.function_id}:{run.run_id}-{step_id}-pause"
    data = {**data, "since": unit.now}
    pause = Pause(
        id=pause_id,
        run_id=run.run_id,
        step_id=step_id,
        kind=kind,
        event_name=event_name,
        expression=expression,
        match_path=None if key is None else key[0],
        match_value=None if key is None else key[1],
        expires_at=expires_at,
        data={**data, "timeout_job": timeout_job},
        created_at=unit.now,
    )
    if not unit.tx.create_pause(pause):
        return False
    unit.enqueue(
        Job(
            id=timeout_job,
            run_id=run.run_id,
            kind=JobKind.PAUSE_TIMEOUT,
            run_at=expires_at,
            step_id=step_id,
            data={**data, "kind": kind.value, "pause": pause_id},
        )
    )
    return True


def wake(unit: Unit) -> None:
    """A sleep is over: its memo is ``null``."""
    _resolve(unit, b"null", "Sleep")


def resume(unit: Unit) -> None:
    """A pause matched an event: a wait's memo is the event, an invoke's the child's result."""
    data = unit.job.data or {}
    event = data.get("event") or {}
    if data.get("kind") == PauseKind.INVOKE.value:
        finished = event.get("data") or {}
        error = finished.get("error")
        if error is not None:
            if isinstance(error, dict):
                error = {"stack": None, **error}  # as the child's run error has it
            memo = orjson.dumps({"error": error})
        else:
            memo = orjson.dumps({"data": finished.get("result")})
        _resolve(unit, memo, "InvokeFunction")
    else:
        _resolve(unit, orjson.dumps(event), "WaitForEvent")


def pause_timeout(unit: Unit) -> None:
    """A pause expired; if nothing consumed it first, the step gets its timeout result."""
    data = unit.job.data or {}
    if unit.tx.claim_pause(str(data.get("pause", ""))) is None:
        unit.settle_jobs(keep_current=False)  # an event got there first
        return
    if data.get("kind") == PauseKind.INVOKE.value:
        _resolve(unit, orjson.dumps({"error": INVOKE_TIMEOUT_ERROR}), "InvokeFunction")
    else:
        _resolve(unit, b"null", "WaitForEvent")


def _resolve(unit: Unit, memo: bytes, op: str) -> None:
    """Record a waiting step's result and call the function again when the protocol says."""
    job = unit.job
    data = job.data or {}
    assert job.step_id is not None
    state = OpsState(unit.run)
    since, mode = data.get("since"), data.get("mode")
    record_and_discover(
        unit,
        state,
        job.step_id,
        memo,
        str(data.get("user_id", "")),
        op,
        mode if isinstance(mode, str) else None,
        started_at=since if isinstance(since, int) else None,
    )
    unit.settle_jobs(keep_current=False)
    state.write(unit)
