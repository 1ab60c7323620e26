"""The storage contract every backend implements.

Writes happen in *units*: a unit is a plain function given a :class:`Tx`, run atomically
(all its writes land or none do). ``Store.transact`` may commit several units in one
database transaction (group commit): each unit runs inside its own savepoint, so one
failing unit is rolled back and reported to its caller alone. A unit must not do I/O other
than through its ``Tx`` and must not block; it may be re-run only by its caller.

What is atomic and what ``Tx`` methods return:

* ``insert_event`` — inserts one event; False if its internal id exists.
* ``create_run`` — inserts a run; False if a run with the same idempotency key exists.
* ``save_step`` — records a step's memo once, at position ``seq`` of the run's stack
  (the caller holds the run's state and knows it): returns ``(inserted, has_pending)``
  where ``inserted`` is False when the step was already recorded (the memo is left
  unchanged) and ``has_pending`` tells whether members of the run's parallel group are
  still out. Recording a step removes it from the pending set; ``grouped=False`` says the
  run has no pending set, which lets a backend skip that bookkeeping.
* ``save_steps`` — ``save_step`` for steps a chain ran one after another, in a run with no
  pending set: returns the ids of those inserted (the others were recorded before).
* ``record_attempt`` — keeps a failed attempt that will be retried (with ``steps``, the
  run's history).
* ``set_pending`` — replaces the run's pending set (the members of a parallel batch, planned
  after the run's first ``after_seq`` steps);
  with a coalesce key, it also files each member under that batch unless it was planned
  in one before (kept after the run ends, for ``step_group``).
* ``enqueue`` — inserts a job; False if a job with that id exists (idempotent enqueue).
  ``enqueue_all`` does it for many (a parallel batch's members) and returns those inserted.
* ``delete_job`` / ``reschedule_job`` — queue maintenance.
* ``save_app`` / ``delete_app`` — an app's last registration body, by app name.
* ``create_pause`` — inserts a pause; False if one with that id exists.
* ``claim_pause`` — deletes a pause and returns it; None if it was already consumed, so a
  pause is consumed exactly once whatever races for it.
* ``pauses_for_event`` — the pauses an event with this name could resume: those indexed by
  a ``(match_path, match_value)`` the event has, and those without an index (to be
  evaluated). Expired pauses are left out.
* ``job_exists`` / ``repurpose_job`` — turn a finished job's row into its follow-up (same
  id, new kind, target and due time): cheaper than a delete and an insert, and the run
  still always has a row standing for its next piece of work.
* ``update_run`` — run metadata.
* ``finish_run`` — the final status, once: False if the run had already finished. It also
  removes the run's queued jobs, its pauses, its flow-control holds and its pending set
  (``grouped=False``: it has none).

Flow control (``engine/flow``) keeps its state through these units too, so that it holds
across restarts (and, on a shared database, across processes):

* ``get_cell`` / ``put_cell`` — a GCRA cell (throttle, rate limit, idempotency key): its
  theoretical arrival time and the run that last went through; expired cells read as None
  and ``purge_cells`` deletes them.
* ``get_hold`` / ``put_hold`` / ``close_hold`` — the run a batch, debounce or singleton key
  holds; ``close_hold`` releases this run's hold of a kind, True if it had one.
* ``add_run_event`` — files an event under a batch run; False if that function already
  took an event with this id. ``append_run_event`` adds it to the run's events and its
  batch hold's size, returning the new size.

Runs held because their function is not registered (``engine/held.py``):

* ``hold_run`` — records a held run unless it is held already; returns the record in force
  (an existing one keeps its ``since`` and ``until``). ``finish_run`` deletes it.
* ``release_held`` — deletes the record and moves the run's call jobs waiting at its
  ``until`` (all but ``keep``, a job running now) to ``now``; returns the moved jobs.
* ``set_function_apps`` / ``function_app`` — the app that last synced each function.

Reruns (``engine/rerun.py``):

* ``step_position`` — a step named by its id or hashed id: its hashed id and where it
  first shows in the run's stack: the position of its record, or, for a step that only
  failed attempts (retried ``StepError``), the position after the steps recorded before its
  first failure; None if the run has no such trace of it.
* ``step_group`` — the parallel batch a step was first planned in (``set_pending`` keeps
  it): how many steps the run had recorded then, and the other members that completed
  without an error; None for a step planned alone.
* ``copy_steps`` — copies a run's recorded steps before a position, and those named in
  ``also``, into another run (same ids, memos, ops, times and app versions, marked as
  copied from the run that executed them; positions renumbered from 1); returns how many.
* ``record_rerun`` — files the new run's origin.

Many processes on one database (PostgreSQL, ``engine/claims.py``): a process runs only the
jobs it holds a lease on.

* ``holds_job`` — whether this process may act on a stored job: False when another process
  holds it (this one's lease ran out and the job was taken over) or it is gone (another
  process finished its run); then the unit must record nothing. A backend with one
  process always holds its jobs.
* ``claim_jobs`` / ``renew_leases`` / ``release_leases`` (:class:`SharedTx`) — take due
  jobs nobody holds, keep this process's, give them all back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from mainspring.engine.records import (
    HeldRun,
    Hold,
    HoldKind,
    Job,
    Pause,
    RerunOrigin,
    Run,
    RunStatus,
    StepAttempt,
    StoredEvent,
)

T = TypeVar("T")


class LeaseLostError(RuntimeError):
    """Another process holds the job now (this one's lease ran out): nothing was recorded."""


class UnitUndoneError(RuntimeError):
    """The unit ran, but was undone with an earlier unit of its transaction that failed
    (whose failure the database reported only after this unit ran): nothing was recorded,
    and the unit may be tried again."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewRun:
    run_id: str
    function_id: str
    event_id: str
    events_json: bytes
    idempotency_key: str | None
    max_attempts: int
    created_at: int
    #: False while the run waits for start gates (a batch, a debounce or a throttle).
    admitted: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class StepRecord:
    """One recorded step, in the order results were saved (the run's stack)."""

    step_id: str
    memo: bytes
    #: The op it was recorded under (``StepRun``, ``Sleep``, ...).
    op: str = "StepRun"
    #: The app version that recorded it, when the app has one.
    app_version: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StepRow:
    """One step to record with ``Tx.save_steps``, at position ``seq`` of the run's stack."""

    step_id: str
    memo: bytes
    seq: int
    user_id: str
    op: str
    started_at: int | None
    ended_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class StepGroup:
    """The parallel batch a step was first planned in (``Tx.step_group``)."""

    #: The highest position of the run's stack when the batch was planned (0: none).
    after: int
    #: The other members whose result is recorded and is not an error.
    completed: tuple[str, ...]


@dataclasses.dataclass(slots=True)
class RunState:
    """What the executor needs to call a run's function."""

    run: Run
    events_json: bytes
    max_attempts: int
    request_version: int
    force_step_plan: bool
    coalesce_key: str | None
    steps: list[StepRecord]
    pending: set[str]
    admitted_at: int | None = None


class Tx(Protocol):
    def insert_event(self, event: StoredEvent) -> bool: ...
    def create_run(self, run: NewRun) -> bool: ...
    def start_run(self, run: NewRun, job: Job) -> bool:
        """Create the run and queue its first job; False, writing nothing, if the run
        exists already (the same id or idempotency key)."""
        ...

    def save_step(
        self,
        run_id: str,
        step_id: str,
        memo: bytes,
        *,
        seq: int,
        user_id: str,
        op: str,
        at: int,
        grouped: bool = True,
        attempt: int = 0,
        started_at: int | None = None,
        app_version: str | None = None,
    ) -> tuple[bool, bool]: ...
    def save_steps(
        self, run_id: str, rows: Sequence[StepRow], *, attempt: int, app_version: str | None
    ) -> set[str]: ...
    def record_attempt(
        self,
        run_id: str,
        step_id: str,
        *,
        attempt: int,
        after_seq: int,
        user_id: str,
        op: str,
        started_at: int | None,
        ended_at: int,
        error: bytes,
    ) -> bool:
        """Add a history entry; False if one exists for this step and attempt."""
        ...

    def step_names(self, run_id: str, step_ids: Sequence[str]) -> dict[str, str]:
        """The user ids of these recorded steps (those that exist)."""
        ...

    def set_pending(
        self, run_id: str, step_ids: Sequence[str], coalesce_key: str | None, *, after_seq: int
    ) -> None: ...
    def record_group(
        self, run_id: str, step_ids: Sequence[str], group_key: str, *, after_seq: int
    ) -> None:
        """File steps as one parallel batch planned after ``after_seq`` recorded steps,
        for reruns (``engine/rerun.py``), as ``set_pending`` does with its coalesce key;
        for a plan the SDK ran and answered in one call, with no pending set."""
        ...

    def drop_pending(self, run_id: str, step_id: str) -> bool:
        """Take a step out of the run's pending set (it will never be recorded); whether
        other members are still pending."""
        ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: bytes | None,
        error: bytes | None,
        at: int,
        grouped: bool = True,
    ) -> bool: ...
    def enqueue(self, job: Job) -> bool: ...
    def enqueue_all(self, jobs: Sequence[Job]) -> list[Job]: ...
    def delete_job(self, job_id: str) -> None: ...
    def save_app(self, name: str, body: bytes, *, at: int) -> None: ...
    def delete_app(self, name: str) -> None: ...
    def reschedule_job(self, job_id: str, *, run_at: int, attempt: int) -> None: ...
    def create_pause(self, pause: Pause) -> bool: ...
    def claim_pause(self, pause_id: str) -> Pause | None: ...
    def pauses_for_event(self, name: str, event: Mapping[str, Any], now: int) -> list[Pause]: ...
    def job_exists(self, job_id: str) -> bool: ...
    def repurpose_job(self, job_id: str, job: Job) -> None: ...
    def get_cell(self, key: str, now: int) -> tuple[int, str | None] | None: ...
    def put_cell(self, key: str, tat: int, run_id: str | None, expires_at: int) -> None: ...
    def purge_cells(self, now: int) -> int: ...
    def get_hold(self, kind: HoldKind, key: str) -> Hold | None: ...
    def put_hold(self, hold: Hold) -> None: ...
    def close_hold(self, kind: HoldKind, run_id: str) -> bool: ...
    def add_run_event(self, dedupe_key: str, event_id: str, run_id: str) -> bool: ...
    def append_run_event(self, run_id: str, event_json: bytes, hold_key: str) -> int: ...
    def hold_run(self, held: HeldRun) -> HeldRun: ...
    def release_held(
        self, run_id: str, until: int, now: int, keep: str | None = None
    ) -> list[Job]: ...
    def set_function_apps(self, app: str, function_ids: Sequence[str], *, at: int) -> None: ...
    def function_app(self, function_id: str) -> str | None: ...
    def step_position(self, run_id: str, step: str) -> tuple[str, int] | None: ...
    def step_group(self, run_id: str, step_id: str) -> StepGroup | None: ...
    def copy_steps(
        self, source: str, target: str, *, before: int | None, also: Sequence[str] = ()
    ) -> int: ...
    def record_rerun(self, origin: RerunOrigin) -> None: ...
    def holds_job(self, job_id: str, run_id: str | None = None) -> bool: ...


class SharedTx(Tx, Protocol):
    """The units of a store many engine processes share."""

    def claim_jobs(self, limit: int) -> list[Job]: ...
    def renew_leases(self) -> list[str]:
        """Renew; the ids of held jobs this process did not know it held."""
        ...

    def release_leases(self) -> int: ...
    def release_limited(self, job_ids: Sequence[str]) -> int:
        """Give back those of these jobs whose function has a concurrency limit."""
        ...


class Store(Protocol):
    """A backend: SQLite (one process) now; PostgreSQL (many processes) later."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Return once the database answered a query (raise when it cannot)."""
        ...

    async def transact(self, unit: Callable[[Tx], T]) -> T: ...
    async def get_run(self, run_id: str) -> Run | None: ...
    async def runs_for_event(self, event_internal_id: str) -> list[Run]: ...
    async def load_run_state(self, run_id: str) -> RunState | None: ...
    async def load_jobs(self) -> list[Job]: ...
    async def jobs_for_run(self, run_id: str) -> list[Job]: ...
    async def load_apps(self) -> list[bytes]: ...
    async def holds_for_run(self, run_id: str) -> list[Hold]: ...
    async def held_runs(self) -> list[HeldRun]:
        """Every run held because its function is not registered."""
        ...

    async def started_runs(self, function_ids: Sequence[str]) -> list[tuple[str, str, bytes]]:
        """``(run_id, function_id, events_json)`` of the unfinished runs of these functions
        that have started (they hold run-level concurrency slots)."""
        ...

    async def get_event(self, internal_id: str) -> StoredEvent | None: ...
    async def history(self, run_id: str) -> list[StepAttempt]: ...
    async def list_events(
        self, *, name: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[StoredEvent]: ...
    async def find_runs(
        self,
        *,
        function_id: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        unfinished: bool = False,
        statuses: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        function_ids: Sequence[str] | None = None,
    ) -> list[Run]:
        """Runs in id order; ``function_ids`` keeps those of any of these functions (with
        ``function_id``, of both), in one query whatever their number."""
        ...

    # Reads of many items at once, one query each whatever their number (GraphQL pages).
    async def histories(self, run_ids: Sequence[str]) -> dict[str, list[StepAttempt]]:
        """``history`` of each run (an empty list for a run with no steps)."""
        ...

    async def jobs_for_runs(self, run_ids: Sequence[str]) -> dict[str, list[Job]]:
        """``jobs_for_run`` of each run, soonest first (runs with none are left out)."""
        ...

    async def runs_for_events(self, event_internal_ids: Sequence[str]) -> dict[str, list[Run]]:
        """``runs_for_event`` of each event (events with none are left out)."""
        ...

    async def rerun_origins(self, run_ids: Sequence[str]) -> dict[str, RerunOrigin]:
        """Where each of these runs came from, for those a rerun started."""
        ...

    async def triggering_events(self, run_ids: Sequence[str]) -> dict[str, bytes]:
        """Each run's triggering events as stored (a JSON list, wire shape)."""
        ...

    async def filed_events(self, keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The events filed under batch runs (``add_run_event``) by these keys
        (``"{function id}:{event id}"``), by key (keys filed under none are left out)."""
        ...


class SharedStore(Store, Protocol):
    """A store many engine processes share: jobs go to the process that claims them."""

    #: This process's name on the leases it holds.
    owner: str
    #: How long a lease lasts unless renewed (milliseconds).
    lease_ms: int

    async def transact(self, unit: Callable[[SharedTx], T]) -> T: ...
    def holds(self, job_id: str) -> bool:
        """Whether this process holds the job (as far as its units have seen)."""
        ...

    @property
    def leading(self) -> bool:
        """Whether this process runs the jobs of functions with concurrency limits."""
        ...

    def set_limited(self, function_ids: Iterable[str]) -> None:
        """The functions with concurrency limits (their jobs go to the flow leader)."""
        ...

    async def next_claimable(self) -> int | None: ...
    async def jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]: ...
    async def listen(
        self,
        wake: Callable[[], None],
        finished: Callable[[list[str] | None], None],
        ready: asyncio.Event,
    ) -> None: ...
