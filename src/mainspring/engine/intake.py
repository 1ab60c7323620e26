"""Events in, runs out: validation, ids, trigger matching and run creation.

:func:`plan_intake` is pure (no I/O): it validates events, assigns internal ids and works
out which functions each event starts. :func:`write_intake` then records all of it inside
one store unit, so an event and the runs it starts land together or not at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import ulid

from mainspring.engine import deadlines
from mainspring.engine.flow import schedule as flow_schedule
from mainspring.engine.records import Job, JobKind, Pause, PauseKind, StoredEvent
from mainspring.engine.store.contract import NewRun, Tx
from mainspring.errors import EventInvalidError
from mainspring.protocol import consts
from mainspring.protocol.durations import parse_duration_ms
from mainspring.protocol.expressions import Expression, compile_expression, interpolate
from mainspring.protocol.json_depth import nests_deeper
from mainspring.protocol.match_keys import equality_key
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function
from mainspring.sdk.triggers import TriggerEvent

#: Largest accepted event, serialised (protocol §8.3).
MAX_EVENT_BYTES = 512 * 1024
MAX_EVENTS_PER_SEND = 5000
MAX_EVENT_NAME = 512
MAX_EVENT_ID = 512
#: How deep a sent event's data may nest: well under the 254 levels orjson writes back,
#: with room for the envelopes the data is answered in (``{"data": [{"data": ...}]}``).
MAX_DATA_DEPTH = 100
#: A sent ``ts`` is epoch milliseconds from 1980 up to 2100 (protocol §8.3); 0 is "now".
MIN_EVENT_TS = 315_532_800_000
MAX_EVENT_TS = 4_102_444_800_000


@dataclasses.dataclass(frozen=True, slots=True)
class _Subscription:
    function: Function[Any]
    expression: Expression | None


class TriggerIndex:
    """Which functions an event name starts: exact names, then ``prefix/*`` wildcards."""

    def __init__(self, functions: Iterable[Function[Any]]) -> None:
        self._exact: dict[str, list[_Subscription]] = {}
        self._wildcards: list[tuple[str, _Subscription]] = []
        self._by_id: dict[str, Function[Any]] = {}
        for function in functions:
            self._by_id[function.id] = function
            for trigger in function.config.triggers:
                if not isinstance(trigger, TriggerEvent):
                    continue
                expression = (
                    compile_expression(trigger.expression)
                    if trigger.expression is not None
                    else None
                )
                sub = _Subscription(function, expression)
                if trigger.event.endswith("*"):
                    self._wildcards.append((trigger.event[:-1], sub))
                else:
                    self._exact.setdefault(trigger.event, []).append(sub)

    def listens(self, name: str) -> bool:
        """Could an event with this name start any function?"""
        return name in self._exact or any(name.startswith(p) for p, _ in self._wildcards)

    def match(self, event: Mapping[str, Any]) -> list[Function[Any]]:
        """Functions to start for ``event``, each at most once.

        ``inngest/function.invoked`` starts exactly the function it names, whatever that
        function's triggers (protocol §8.5).
        """
        name = event["name"]
        if name == consts.FUNCTION_INVOKED_EVENT:
            meta = (event.get("data") or {}).get("_inngest") or {}
            target = self._by_id.get(str(meta.get("fn_id", "")))
            return [] if target is None else [target]
        subs = list(self._exact.get(name, ()))
        subs.extend(sub for prefix, sub in self._wildcards if name.startswith(prefix))
        matched: dict[str, Function[Any]] = {}
        variables: dict[str, Any] | None = None
        for sub in subs:
            if sub.function.id in matched:
                continue
            if sub.expression is not None:
                if variables is None:
                    variables = {"event": event}
                if not sub.expression.matches(variables):
                    continue
            matched[sub.function.id] = sub.function
        return list(matched.values())


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run an event would start, before flow control has its say."""

    run: NewRun
    job: Job
    function: Function[Any]


@dataclasses.dataclass(slots=True)
class IntakePlan:
    """Everything one send writes, and what to do after it commits."""

    events: list[StoredEvent]
    runs: list[PlannedRun]
    #: The cancel conditions armed for each new run (protocol §8.6).
    cancels: dict[str, list[Pause]] = dataclasses.field(default_factory=dict)


def validate_events(
    raw: Sequence[Any], *, allow_internal: bool = False
) -> list[tuple[Event, bytes]]:
    """Check every event before any is stored; errors name the event and the problem.

    Returns each event with its data serialised (checked once, reused for storage).
    ``allow_internal`` admits the engine's own ``inngest/`` events, of any size.
    """
    if len(raw) > MAX_EVENTS_PER_SEND:
        raise EventInvalidError(f"too many events in one send: {len(raw)} > {MAX_EVENTS_PER_SEND}")
    events: list[tuple[Event, bytes]] = []
    for index, item in enumerate(raw):
        where = f"event {index}"
        if isinstance(item, Mapping):
            try:
                item = Event.model_validate(item)
            except ValueError as exc:
                raise EventInvalidError(f"{where}: {exc}") from exc
        if not isinstance(item, Event):
            raise EventInvalidError(f"{where}: expected an Event, got {type(item).__name__}")
        if not item.name or not isinstance(item.name, str):
            raise EventInvalidError(f"{where}: the name is required")
        if item.ts and not MIN_EVENT_TS <= item.ts < MAX_EVENT_TS:
            raise EventInvalidError(
                f"{where}: ts: {item.ts} is not epoch milliseconds from 1980 to 2100"
            )
        where = f"event {index} ({item.name[:100]!r})"
        if len(item.name) > MAX_EVENT_NAME:
            raise EventInvalidError(f"{where}: the name is longer than {MAX_EVENT_NAME} characters")
        if len(item.id) > MAX_EVENT_ID:
            raise EventInvalidError(f"{where}: id: longer than {MAX_EVENT_ID} characters")
        if not allow_internal and item.name.startswith(consts.INTERNAL_EVENT_PREFIX):
            raise EventInvalidError(f"{where}: names starting with 'inngest/' are reserved")
        # Internal events carry a run's output, already bounded by the encoder's own limit.
        depth = None if allow_internal else MAX_DATA_DEPTH
        too_deep = f"{where}: data: nests deeper than {MAX_DATA_DEPTH} levels"
        try:
            data_json = orjson.dumps(dict(item.data), option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            if depth is not None and nests_deeper(item.data, depth):
                raise EventInvalidError(too_deep) from exc
            raise EventInvalidError(f"{where}: data is not JSON: {exc}") from exc
        if depth is not None and nests_deeper(item.data, depth, data_json):
            raise EventInvalidError(too_deep)
        size = len(data_json) + len(item.name) + len(item.id)
        # Internal events carry a run's output: they are as large as the run allows.
        if size > MAX_EVENT_BYTES and not allow_internal:
            raise EventInvalidError(
                f"{where}: {size} bytes is over the {MAX_EVENT_BYTES}-byte limit"
            )
        events.append((item, data_json))
    return events


def plan_intake(
    events: Sequence[tuple[Event, bytes]],
    index: TriggerIndex,
    now_ms: int,
    internal_ids: Sequence[str] | None = None,
) -> IntakePlan:
    """Ids, stored rows and the runs to start for validated events (no I/O).

    ``internal_ids`` (from an event-id seed) makes a resent batch get the same ids.
    """
    plan = IntakePlan(events=[], runs=[])
    for position, (event, data_json) in enumerate(events):
        internal_id = internal_ids[position] if internal_ids else str(ulid.ULID())
        stored = StoredEvent(
            internal_id=internal_id,
            id=event.id or internal_id,
            name=event.name,
            data=orjson.loads(data_json),
            ts=event.ts or now_ms,
            received_at=now_ms,
            data_json=data_json,
        )
        plan.events.append(stored)
        wire = stored.to_wire()
        matched = index.match(wire)
        if matched:
            events_json = b"[" + stored.wire_json() + b"]"
            for function in matched:
                run, job = new_run(function, events_json, stored.internal_id, stored.id, now_ms)
                plan.runs.append(PlannedRun(run, job, function))
                if function.config.cancel:
                    plan.cancels[run.run_id] = cancel_pauses(function, run.run_id, wire, now_ms)
    return plan


#: How long a cancel condition stays armed when it sets no timeout.
DEFAULT_CANCEL_TIMEOUT_MS = 366 * 86_400_000


def cancel_pauses(
    function: Function[Any], run_id: str, event: Mapping[str, Any], now_ms: int
) -> list[Pause]:
    """The pauses that cancel a new run, its triggering event's values substituted."""
    pauses = []
    for position, cancel in enumerate(function.config.cancel):
        expression = None
        if cancel.if_exp is not None:
            expression = interpolate(cancel.if_exp, event)
            if expression.strip() == "false":
                continue  # can never match: no pause
        wire = cancel.to_wire()
        timeout = wire.get("timeout")
        expires = now_ms + (
            int(parse_duration_ms(timeout)) if timeout else DEFAULT_CANCEL_TIMEOUT_MS
        )
        key = equality_key(expression) if expression is not None else None
        pauses.append(
            Pause(
                id=f"{run_id}:cancel-{position}",
                run_id=run_id,
                step_id=f"cancel-{position}",
                kind=PauseKind.CANCEL,
                event_name=cancel.event,
                expression=expression,
                match_path=None if key is None else key[0],
                match_value=None if key is None else key[1],
                expires_at=expires,
                data={},
                created_at=now_ms,
            )
        )
    return pauses


def new_run(
    function: Function[Any],
    events_json: bytes,
    event_internal_id: str,
    event_key: str,
    now_ms: int,
) -> tuple[NewRun, Job]:
    run_id = str(ulid.ULID())
    run = NewRun(
        run_id=run_id,
        function_id=function.id,
        event_id=event_internal_id,
        events_json=events_json,
        # One run per function per event id (protocol §8.3), for a day in the reference;
        # forever here, since the key is part of the run row.
        idempotency_key=f"{function.id}:{event_key}",
        max_attempts=function.config.max_attempts,
        created_at=now_ms,
    )
    job = Job(id=f"{run_id}-start", run_id=run_id, kind=JobKind.START, run_at=now_ms)
    return run, job


@dataclasses.dataclass(slots=True)
class IntakeResult:
    """What recording a plan did: runs created, and jobs for runs it resumed or cancelled."""

    created: list[tuple[NewRun, Job]]
    resumed: list[Job]
    #: Runs flow control finished as skipped (caches must drop them).
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: Jobs moved to another time: their queued copies are replaced, not added to.
    moved: list[Job] = dataclasses.field(default_factory=list)

    @property
    def jobs(self) -> list[Job]:
        """Every job the plan queued: new runs' first jobs, then resumptions."""
        return [job for _, job in self.created] + self.resumed


def write_intake(
    tx: Tx, plan: IntakePlan, now: int, emit: flow_schedule.Emit | None = None
) -> IntakeResult:
    """Record a plan: store the events, resume the pauses they match, create the runs.

    Pauses are matched inside the same unit that records the event, so only pauses that
    existed before the event can match it, and a pause is consumed exactly once. Runs of
    functions with flow-control options go through :func:`flow_schedule.schedule`
    (``emit`` records the internal events it may send).
    """
    result = IntakeResult(created=[], resumed=[])
    runs_of: dict[str, list[PlannedRun]] = {}
    for planned in plan.runs:
        runs_of.setdefault(planned.run.event_id, []).append(planned)
    for event in plan.events:
        if not tx.insert_event(event):
            continue  # a resent event (same seeded id): it started and resumed all it could
        wire = event.to_wire()
        for pause in tx.pauses_for_event(event.name, wire, now):
            # An indexed pause's whole condition is the equality its index just matched.
            if (
                pause.match_path is None
                and pause.expression is not None
                and not compile_expression(pause.expression).matches({"async": wire})
            ):
                continue
            if tx.claim_pause(pause.id) is None:
                continue
            job = resume_job(pause, wire, now)
            timeout_job = pause.data.get("timeout_job")
            if isinstance(timeout_job, str):
                tx.delete_job(timeout_job)
            if tx.enqueue(job):
                result.resumed.append(job)
        # Runs start after the pauses this event resumed, so it cannot cancel them.
        for planned in runs_of.get(event.internal_id, ()):
            run, job = planned.run, planned.job
            if flow_schedule.decides(planned.function):
                if not _schedule(tx, planned, event, now, emit, result):
                    continue
            elif tx.start_run(run, job):
                result.created.append((run, job))
            else:
                continue
            for pause in plan.cancels.get(run.run_id, ()):
                tx.create_pause(pause)
            deadline = deadlines.start_deadline(planned.function, run)
            if deadline is not None and tx.enqueue(deadline):
                result.resumed.append(deadline)
    return result


def _schedule(
    tx: Tx,
    planned: PlannedRun,
    event: StoredEvent,
    now: int,
    emit: flow_schedule.Emit | None,
    result: IntakeResult,
) -> bool:
    """Schedule one run through flow control; whether it was created (and queued)."""

    def no_emit(tx: Tx, events: Sequence[Event]) -> list[Job]:
        raise RuntimeError("flow control needs the engine to emit internal events")

    outcome = flow_schedule.schedule(
        tx, planned.function, planned.run, planned.job, event, now, emit or no_emit
    )
    if outcome.created is not None:
        result.created.append(outcome.created)
    result.skipped.extend(outcome.skipped)
    result.resumed.extend(outcome.jobs)
    result.moved.extend(outcome.moved)
    return outcome.created is not None


def resume_job(pause: Pause, event: dict[str, Any], now: int) -> Job:
    """The job that acts on a matched pause."""
    if pause.kind is PauseKind.CANCEL:
        return Job(
            id=f"{pause.run_id}-cancel", run_id=pause.run_id, kind=JobKind.CANCEL, run_at=now
        )
    return Job(
        id=f"{pause.id}-event",
        run_id=pause.run_id,
        kind=JobKind.RESUME,
        run_at=now,
        step_id=pause.step_id,
        data={**pause.data, "kind": pause.kind.value, "event": event},
    )
