"""Rows the engine stores and returns: runs, events, queue jobs."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from mainspring.sdk.function import Function


class RunStatus(enum.StrEnum):
    """A run's status, with the strings of the REST API (protocol §12).

    ``Queued``: created, not started yet (held by a batch, a debounce, a throttle or a
    concurrency limit, or just waiting for its first call). ``Skipped``: never started,
    because of a rate limit, an idempotency key, a singleton or a later debounced event;
    its error says which.
    """

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"

    @classmethod
    def _missing_(cls, value: object) -> RunStatus | None:
        # Databases written before flow control called a run not started yet "Scheduled".
        return cls.QUEUED if value == "Scheduled" else None

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}
)
#: The statuses of finished runs, as stored (for SQL filters).
FINISHED_STATUSES = tuple(sorted(status.value for status in _FINISHED))


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """A run as stored.

    Attributes:
        id: the run id (a ULID).
        function_id: the fully qualified function id.
        event_id: internal id of the (first) triggering event.
        status: ``"Completed"``, ``"Failed"``, ``"Cancelled"``, ``"Running"``, ...
        output: the function's return value (JSON), once completed.
        error: ``{"name", "message", "stack"?, "code"?}`` once failed.
        created_at, started_at, ended_at: epoch milliseconds.
        app_version: the app version that started it (``Client(app_version=)``, or the
            ``appVersion`` of the app's sync), if the app has one.
    """

    id: str
    function_id: str
    event_id: str
    status: RunStatus
    output: Any
    error: dict[str, Any] | None
    created_at: int
    started_at: int | None
    ended_at: int | None
    app_version: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as received: ``internal_id`` is the engine's ULID, ``id`` the user's key."""

    internal_id: str
    id: str
    name: str
    data: dict[str, Any]
    ts: int
    received_at: int
    #: ``data`` already serialised, when the intake has it (saves encoding it again).
    data_json: bytes | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.ts, "user": {}}

    def wire_json(self) -> bytes:
        """``to_wire()`` serialised, reusing ``data_json``."""
        data: Any = self.data if self.data_json is None else orjson.Fragment(self.data_json)
        return orjson.dumps(
            {"id": self.id, "name": self.name, "data": data, "ts": self.ts, "user": {}}
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StepAttempt:
    """One entry of a run's history: a step's final result, or a failed attempt of it.

    Attributes:
        step_id: the hashed step id; ``user_id`` the id the function gave.
        op: ``StepRun``, ``StepError`` (a retried failure), ``StepFailed``, ``Sleep``, ...,
            or ``FunctionError``: a failed call of the function itself (an error outside
            steps, or an app that refused, timed out or did not answer as an SDK), filed
            under the targeted step or ``step@<n>`` (a discovery call after n steps).
        attempt: 0-based attempt that produced this entry.
        started_at, ended_at: epoch milliseconds (``started_at`` when known).
        output: the step's result; ``error``: ``{"name", "message", ...}`` if it failed.
        app_version: the app version that recorded a step's result, if the app has one.
        copied_from: for a result a rerun reused (``Engine.rerun`` from a step), the run
            that executed the step; its times are that run's (before this run started).
    """

    step_id: str
    user_id: str
    op: str
    attempt: int
    started_at: int | None
    ended_at: int
    output: Any
    error: dict[str, Any] | None
    app_version: str | None = None
    copied_from: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AppInfo:
    """An app the engine serves: ``url`` is None for functions loaded in process."""

    name: str
    url: str | None
    sdk: str
    functions: list[Function[Any]]


class JobKind(enum.StrEnum):
    """What a queue item does when it comes due."""

    START = "start"  # first call of a run (discovery)
    DISCOVER = "discover"  # call with stepId=step after a step finished
    PLAN = "plan"  # call targeting one planned step
    SLEEP = "sleep"  # a sleep's wake-up
    RESUME = "resume"  # a pause was matched: record its result, then call again
    PAUSE_TIMEOUT = "pause-timeout"  # a pause expired unmatched
    CANCEL = "cancel"  # a cancel pause matched: cancel the run
    CRON = "cron"  # a cron trigger's next tick (belongs to no run)
    TIMEOUT = "timeout"  # a run's finish deadline (Timeouts.finish)


class HoldKind(enum.StrEnum):
    """What a flow-control hold keeps one run of per key (engine/flow)."""

    BATCH = "batch"  # the open batch new events join
    DEBOUNCE = "debounce"  # the pending run a new event replaces
    SINGLETON = "singleton"  # the unfinished run of a singleton key


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """The run a flow-control key holds: ``since`` is its first event (a batch, a
    debounce) or when it took the key (a singleton); ``size`` counts a batch's events."""

    kind: HoldKind
    key: str
    run_id: str
    since: int
    size: int = 1


class PauseKind(enum.StrEnum):
    """What a pause waits for."""

    WAIT = "wait"  # step.wait_for_event
    INVOKE = "invoke"  # step.invoke: the child's inngest/function.finished
    CANCEL = "cancel"  # a function's cancel=[Cancel(...)] condition


@dataclasses.dataclass(frozen=True, slots=True)
class Pause:
    """A run waiting for an event (protocol §6.4).

    ``expression`` has the triggering event's values already substituted, so only
    ``async`` (the candidate event) is left. When it is a plain ``async.<path> ==
    <literal>``, ``match_path``/``match_value`` index it so an event finds its pauses
    without evaluating every one.
    """

    id: str
    run_id: str
    step_id: str
    kind: PauseKind
    event_name: str
    expression: str | None
    match_path: str | None
    match_value: str | None
    expires_at: int
    data: dict[str, Any]
    created_at: int


@dataclasses.dataclass(slots=True)
class Job:
    """A queue item. ``id`` is an idempotency key: enqueueing an existing id is a no-op."""

    id: str
    run_id: str
    kind: JobKind
    run_at: int
    step_id: str | None = None
    attempt: int = 0
    priority: int = 0
    data: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RerunOrigin:
    """Where a run started by a rerun (``Engine.rerun``) came from: the run it reruns, the
    step it was rerun from (None: from the start) and how many of that run's recorded steps
    were copied in (those before ``from_step``), when (epoch ms)."""

    run_id: str
    original_id: str
    from_step: str | None
    copied: int
    created_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class HeldRun:
    """A run held because its function is not registered (``engine/held.py``): since when,
    until when (the end of its grace period), and the app that last served the function."""

    run_id: str
    function_id: str
    app: str
    since: int
    until: int
