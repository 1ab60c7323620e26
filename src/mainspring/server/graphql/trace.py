"""A run's trace as the GraphQL API shows it: a root span for the run and one span per
step, with a child span per attempt when the step was retried, and, while the run goes on,
a span for each step it waits on (queued, asleep, waiting for an event or a child run).

Outputs are not inlined in spans (a run may hold megabytes of step results): a span carries
an opaque ``outputID`` that ``runTraceSpanOutputByID`` resolves, as the reference API does.
This module is pure: it turns stored rows into plain span records and back.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

import orjson

from mainspring.engine.drift import CODE_CHANGED_OP, DROPPED_OP
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.flow.skips import FLOW_STEP_ID, SKIPPED_OP, WAITING_OP
from mainspring.engine.records import Job, JobKind, PauseKind, Run, RunStatus, StepAttempt
from mainspring.protocol.opcodes import Opcode


class SpanStatus(enum.Enum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    QUEUED = "QUEUED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class StepOp(enum.Enum):
    RUN = "RUN"
    SLEEP = "SLEEP"
    WAIT_FOR_EVENT = "WAIT_FOR_EVENT"
    INVOKE = "INVOKE"


_STEP_OPS = {
    Opcode.SLEEP.value: StepOp.SLEEP,
    Opcode.WAIT_FOR_EVENT.value: StepOp.WAIT_FOR_EVENT,
    Opcode.INVOKE_FUNCTION.value: StepOp.INVOKE,
}

_RUN_SPAN_STATUS = {
    RunStatus.QUEUED: SpanStatus.QUEUED,
    RunStatus.SKIPPED: SpanStatus.SKIPPED,
    RunStatus.RUNNING: SpanStatus.RUNNING,
    RunStatus.COMPLETED: SpanStatus.COMPLETED,
    RunStatus.FAILED: SpanStatus.FAILED,
    RunStatus.CANCELLED: SpanStatus.CANCELLED,
}


@dataclasses.dataclass(frozen=True, slots=True)
class OutputRef:
    """What an ``outputID`` points at: the run's own result (``step_id`` None), a step's
    final result (``attempt`` None) or one failed attempt of a step."""

    run_id: str
    step_id: str | None = None
    attempt: int | None = None

    def encode(self) -> str:
        raw = orjson.dumps([self.run_id, self.step_id, self.attempt])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(output_id: str) -> OutputRef:
        """The reference an id stands for; ``ValueError`` naming the id if it is not one."""
        try:
            raw = base64.urlsafe_b64decode(output_id + "=" * (-len(output_id) % 4))
            run_id, step_id, attempt = orjson.loads(raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"outputID {output_id!r} is not an output id of this server") from exc
        if not isinstance(run_id, str) or not isinstance(step_id, str | None):
            raise ValueError(f"outputID {output_id!r} is not an output id of this server")
        if attempt is not None and not isinstance(attempt, int):
            raise ValueError(f"outputID {output_id!r} is not an output id of this server")
        return OutputRef(run_id, step_id, attempt)


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One node of a run's trace (epoch milliseconds for the times)."""

    span_id: str
    run_id: str
    name: str
    status: SpanStatus
    attempts: int
    queued_at: int
    started_at: int | None
    ended_at: int | None
    output_id: str | None
    step_id: str | None
    step_op: StepOp | None
    is_root: bool
    parent_span_id: str | None
    children: tuple[Span, ...] = ()
    #: A step a rerun reused (``Engine.rerun`` from a later step): the run that executed
    #: it. Its times are that run's, so they come before this run's start.
    copied_from: str | None = None

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0, self.ended_at - self.started_at)


def build_trace(
    run: Run, function_name: str, history: list[StepAttempt], jobs: Sequence[Job] = ()
) -> Span:
    """The run's root span, its steps as children in the order they were recorded, then
    (while the run goes on) what it waits for: planned steps, sleeps, waits, invokes."""
    by_step: dict[str, list[StepAttempt]] = {}
    for entry in history:
        by_step.setdefault(entry.step_id, []).append(entry)
    root_id = f"{run.id}:run"
    steps = tuple(
        _step_span(run, root_id, step_id, entries) for step_id, entries in by_step.items()
    )
    if not run.status.finished:
        waiting = (_queued_span(run, root_id, job) for job in jobs if job.step_id not in by_step)
        steps += tuple(span for span in waiting if span is not None)
    return Span(
        span_id=root_id,
        run_id=run.id,
        name=function_name,
        status=_RUN_SPAN_STATUS[run.status],
        attempts=0,
        queued_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        output_id=OutputRef(run.id).encode() if run.status.finished else None,
        step_id=None,
        step_op=None,
        is_root=True,
        parent_span_id=None,
        children=steps,
    )


#: History entries that stand for a failed attempt, not a step's final result: a step's
#: retried error, or a failed call of the function itself (filed under the step the call
#: targeted, or under ``step@<n>`` for a call that targeted no step).
_ATTEMPT_OPS = frozenset({Opcode.STEP_ERROR.value, FUNCTION_ERROR_OP})
#: Entries with an output of their own per attempt (what a span's output id points at).
_PER_ATTEMPT_OPS = _ATTEMPT_OPS | {DROPPED_OP, CODE_CHANGED_OP}
#: Entries that end a step without a result of its own: shown as skipped.
_SKIPPED_OPS = frozenset({DROPPED_OP, CODE_CHANGED_OP})
#: Name of the span for a note that the code changed under the run.
CODE_CHANGED_SPAN_NAME = "Code changed"

#: Name of a span for failed calls of the function outside any step.
FUNCTION_SPAN_NAME = "Function error"


def _flow_span(run: Run, parent: str, entry: StepAttempt) -> Span:
    """Flow control's word on the run: what holds it back now, or why it was skipped."""
    skipped = entry.op == SKIPPED_OP
    info = entry.error if skipped else entry.output
    message = info.get("message") if isinstance(info, dict) else None
    if skipped:
        name = f"Skipped: {info.get('name')}" if isinstance(info, dict) else "Skipped"
    else:
        what = info.get("waiting_for") if isinstance(info, dict) else None
        name = f"Waiting for {what}" if isinstance(what, str) else "Waiting"
    return Span(
        span_id=f"{run.id}:{entry.step_id}",
        run_id=run.id,
        name=name if message is None else f"{name} ({message})",
        status=SpanStatus.SKIPPED if skipped else SpanStatus.QUEUED,
        attempts=0,
        queued_at=entry.started_at if entry.started_at is not None else entry.ended_at,
        started_at=None,
        ended_at=entry.ended_at if skipped else None,
        output_id=_ref(run.id, entry).encode(),
        step_id=entry.step_id,
        step_op=None,
        is_root=False,
        parent_span_id=parent,
    )


def _step_span(run: Run, parent: str, step_id: str, entries: list[StepAttempt]) -> Span:
    last = entries[-1]
    if step_id == FLOW_STEP_ID and last.op in (SKIPPED_OP, WAITING_OP):
        return _flow_span(run, parent, last)
    unresolved = last.op in _ATTEMPT_OPS  # only failed attempts so far
    if last.op in _SKIPPED_OPS:
        status = SpanStatus.SKIPPED  # the code no longer reaches it: it ended unrecorded
    elif not unresolved:
        # A result that is an error is a failure whatever op recorded it (an invoke whose
        # function failed, an AI step whose provider refused).
        failed = last.op == Opcode.STEP_FAILED.value or last.error is not None
        status = SpanStatus.FAILED if failed else SpanStatus.COMPLETED
    else:
        # Still being retried, unless the run has ended without another attempt.
        status = SpanStatus.FAILED if run.status.finished else SpanStatus.RUNNING
    ended = not unresolved or run.status.finished
    name = next((e.user_id for e in reversed(entries) if e.user_id), "")
    span_id = f"{run.id}:{step_id}"
    first_start = next((e.started_at for e in entries if e.started_at is not None), None)
    start = first_start if first_start is not None else entries[0].ended_at
    children: tuple[Span, ...] = ()
    if len(entries) > 1:
        children = tuple(_attempt_span(run, span_id, entry) for entry in entries)
    return Span(
        span_id=span_id,
        run_id=run.id,
        name=name or (CODE_CHANGED_SPAN_NAME if last.op == CODE_CHANGED_OP else FUNCTION_SPAN_NAME),
        status=status,
        attempts=last.attempt + (1 if unresolved and not ended else 0),
        queued_at=start,
        started_at=start,
        ended_at=last.ended_at if ended else None,
        output_id=_ref(run.id, last).encode() if ended else None,
        step_id=step_id,
        step_op=_STEP_OPS.get(last.op, StepOp.RUN) if name else None,
        is_root=False,
        parent_span_id=parent,
        children=children,
        copied_from=next((e.copied_from for e in entries if e.copied_from), None),
    )


#: What a queued job of a step stands for: its span's status and op.
_QUEUED = {
    JobKind.PLAN: (SpanStatus.QUEUED, StepOp.RUN),
    JobKind.SLEEP: (SpanStatus.WAITING, StepOp.SLEEP),
}
_PAUSED = {
    PauseKind.WAIT.value: StepOp.WAIT_FOR_EVENT,
    PauseKind.INVOKE.value: StepOp.INVOKE,
}


def _queued_span(run: Run, parent: str, job: Job) -> Span | None:
    """A span for a step the run waits on, from the job that will move it on; None for
    jobs of no step (the next call, a cancel condition's expiry, ...)."""
    data = job.data or {}
    if job.kind is JobKind.PAUSE_TIMEOUT and data.get("kind") in _PAUSED:
        status, op = SpanStatus.WAITING, _PAUSED[str(data["kind"])]
    elif job.kind in _QUEUED and job.step_id is not None:
        status, op = _QUEUED[job.kind]
    else:
        return None
    since = data.get("since")
    started = since if isinstance(since, int) else None
    name = data.get("user_id")
    return Span(
        span_id=f"{run.id}:{job.step_id}",
        run_id=run.id,
        name=name if isinstance(name, str) and name else str(job.step_id),
        status=status,
        attempts=job.attempt,
        queued_at=started if started is not None else job.run_at,
        started_at=started if status is SpanStatus.WAITING else None,
        ended_at=None,
        output_id=None,
        step_id=job.step_id,
        step_op=op,
        is_root=False,
        parent_span_id=parent,
    )


def _ref(run_id: str, entry: StepAttempt) -> OutputRef:
    attempt = entry.attempt if entry.op in _PER_ATTEMPT_OPS else None
    return OutputRef(run_id, entry.step_id, attempt)


def _attempt_span(run: Run, parent: str, entry: StepAttempt) -> Span:
    failed = (
        entry.op in _PER_ATTEMPT_OPS
        or entry.op == Opcode.STEP_FAILED.value
        or entry.error is not None
    )
    return Span(
        span_id=f"{parent}:{entry.attempt}:{entry.op}",
        run_id=run.id,
        name=f"Attempt {entry.attempt}",
        status=SpanStatus.FAILED if failed else SpanStatus.COMPLETED,
        attempts=entry.attempt,
        queued_at=entry.started_at if entry.started_at is not None else entry.ended_at,
        started_at=entry.started_at,
        ended_at=entry.ended_at,
        output_id=_ref(run.id, entry).encode(),
        step_id=entry.step_id,
        step_op=_STEP_OPS.get(entry.op, StepOp.RUN) if entry.user_id else None,
        is_root=False,
        parent_span_id=parent,
    )


def find_output(
    ref: OutputRef, run: Run, history: list[StepAttempt]
) -> tuple[Any, dict[str, Any] | None] | None:
    """``(data, error)`` of what ``ref`` points at, or None if the run has no such output."""
    if ref.step_id is None:
        if not run.status.finished:
            return None
        return (None, run.error) if run.error is not None else (run.output, None)
    for entry in history:
        if entry.step_id != ref.step_id:
            continue
        is_attempt = entry.op in _PER_ATTEMPT_OPS
        if (ref.attempt is None and not is_attempt) or (
            ref.attempt is not None and is_attempt and entry.attempt == ref.attempt
        ):
            return entry.output, entry.error
    return None
