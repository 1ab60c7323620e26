"""GraphQL object types, named as in the reference dev server's schema so that tools
written against it (``run { status output }``, ``runTrigger { payloads }``, ``trace {
childrenSpans { outputID } }``, ``event { functionRuns }``) work unchanged.

Field names that are not plain camelCase (``runID``, ``outputID``, ``functionID``) are
spelled out: strawberry would otherwise produce ``runId``.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

import orjson
import strawberry

from mainspring.engine.records import AppInfo, Run, RunStatus, StoredEvent
from mainspring.sdk.function import Function
from mainspring.server.graphql.trace import Span, SpanStatus, StepOp


def _time(ms: int | None) -> datetime.datetime | None:
    return None if ms is None else datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


@strawberry.enum
class FunctionRunStatus(enum.Enum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RUNNING = "RUNNING"
    QUEUED = "QUEUED"
    SKIPPED = "SKIPPED"


RUN_STATUS: dict[RunStatus, FunctionRunStatus] = {
    RunStatus.QUEUED: FunctionRunStatus.QUEUED,
    RunStatus.SKIPPED: FunctionRunStatus.SKIPPED,
    RunStatus.RUNNING: FunctionRunStatus.RUNNING,
    RunStatus.COMPLETED: FunctionRunStatus.COMPLETED,
    RunStatus.FAILED: FunctionRunStatus.FAILED,
    RunStatus.CANCELLED: FunctionRunStatus.CANCELLED,
}

RunTraceSpanStatus = strawberry.enum(SpanStatus, name="RunTraceSpanStatus")
StepOpEnum = strawberry.enum(StepOp, name="StepOp")


#: How deep a stored value is shown when it nests deeper than the JSON encoder goes (254
#: levels; intake refuses such values, but older databases may hold some).
SHOWN_DEPTH = 128
DEGRADED_NOTE = f"[degraded: nested deeper than {SHOWN_DEPTH} levels, not shown]"


def to_json(value: Any) -> str:
    """``value`` as a JSON string, never failing: a value the encoder refuses (nested too
    deep) is shown down to :data:`SHOWN_DEPTH` levels, with a note in place of the rest."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(_clipped(value, SHOWN_DEPTH)).decode()
    except orjson.JSONEncodeError as exc:
        return orjson.dumps({"_degraded": f"the value could not be encoded: {exc}"}).decode()


def _clipped(value: Any, levels: int) -> Any:
    if isinstance(value, dict | list | tuple) and levels <= 0:
        return DEGRADED_NOTE
    if isinstance(value, dict):
        return {key: _clipped(item, levels - 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clipped(item, levels - 1) for item in value]
    return value


def event_json(event: StoredEvent) -> str:
    """The event as sent to functions (``to_wire()``), as a JSON string."""
    try:
        return event.wire_json().decode()
    except orjson.JSONEncodeError:
        return to_json(event.to_wire())


def run_output_json(run: Run) -> str | None:
    """A finished run's output as a JSON string: its return value, or its error."""
    if run.status is RunStatus.COMPLETED:
        return to_json(run.output)
    if run.error is not None:
        return to_json(run.error)
    return None


@strawberry.type
class FunctionTrigger:
    type: str
    value: str
    condition: str | None


@strawberry.type
class App:
    name: str
    url: str | None
    sdk_language: str
    functions: list[FunctionInfo]

    @staticmethod
    def of(info: AppInfo) -> App:
        return App(
            name=info.name,
            url=info.url,
            sdk_language="py",
            functions=[FunctionInfo.of(fn, info.name) for fn in info.functions],
        )


@strawberry.type(name="Function")
class FunctionInfo:
    id: strawberry.ID
    slug: str
    name: str
    app_name: str
    triggers: list[FunctionTrigger]

    @staticmethod
    def of(fn: Function[object], app_name: str) -> FunctionInfo:
        triggers = []
        for trigger in fn.config.triggers:
            wire = trigger.to_wire()
            if "cron" in wire:
                triggers.append(FunctionTrigger(type="CRON", value=wire["cron"], condition=None))
            else:
                triggers.append(
                    FunctionTrigger(
                        type="EVENT", value=wire["event"], condition=wire.get("expression")
                    )
                )
        return FunctionInfo(
            id=strawberry.ID(fn.id), slug=fn.id, name=fn.name, app_name=app_name, triggers=triggers
        )


@strawberry.type
class StepError:
    message: str
    name: str | None
    stack: str | None
    cause: str | None


@strawberry.type
class RunTraceSpanOutput:
    data: str | None
    error: StepError | None


@strawberry.type
class RunTraceSpan:
    span_id: str = strawberry.field(name="spanID")
    run_id: str = strawberry.field(name="runID")
    trace_id: str = strawberry.field(name="traceID")
    name: str
    status: RunTraceSpanStatus  # type: ignore[valid-type]
    attempts: int | None
    queued_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    duration: int | None
    output_id: str | None = strawberry.field(name="outputID")
    step_id: str | None = strawberry.field(name="stepID")
    step_op: StepOpEnum | None  # type: ignore[valid-type]
    is_root: bool
    parent_span_id: str | None = strawberry.field(name="parentSpanID")
    children_spans: list[RunTraceSpan]
    #: Not in the reference: for a step a rerun reused instead of running it, the run that
    #: executed it (its times are that run's, before this run started); else null.
    copied_from_run_id: str | None = strawberry.field(
        name="copiedFromRunID",
        default=None,
        description="For a step a rerun reused instead of running it: the run that executed "
        "it (the span's times are that run's, before this run started).",
    )

    @staticmethod
    def of(span: Span) -> RunTraceSpan:
        return RunTraceSpan(
            span_id=span.span_id,
            run_id=span.run_id,
            trace_id=span.run_id,
            name=span.name,
            status=span.status,
            attempts=span.attempts,
            queued_at=_time(span.queued_at) or datetime.datetime.fromtimestamp(0, datetime.UTC),
            started_at=_time(span.started_at),
            ended_at=_time(span.ended_at),
            duration=span.duration,
            output_id=span.output_id,
            step_id=span.step_id,
            step_op=span.step_op,
            is_root=span.is_root,
            parent_span_id=span.parent_span_id,
            children_spans=[RunTraceSpan.of(child) for child in span.children],
            copied_from_run_id=span.copied_from,
        )


@strawberry.type
class RunTraceTrigger:
    ids: list[str] = strawberry.field(name="IDs")
    payloads: list[str]
    timestamp: datetime.datetime
    event_name: str | None
    is_batch: bool
    batch_id: str | None = strawberry.field(name="batchID")
    cron: str | None

    @staticmethod
    def of(event: StoredEvent) -> RunTraceTrigger:
        return RunTraceTrigger(
            ids=[event.internal_id],
            payloads=[event_json(event)],
            timestamp=_time(event.received_at) or datetime.datetime.now(datetime.UTC),
            event_name=event.name,
            is_batch=False,
            batch_id=None,
            cron=None,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None
