"""The engine's read side: runs, their histories and queued work, events, and what holds
a run back. A mixin of :class:`~mainspring.engine.engine.Engine`, kept apart so that the
engine module is about running things."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import orjson

from mainspring.engine import run_search
from mainspring.engine.clock import Clock
from mainspring.engine.executor import Executor
from mainspring.engine.flow.admission import Admission
from mainspring.engine.flow.skips import FLOW_STEP_ID, WAITING_OP
from mainspring.engine.held import HeldRuns
from mainspring.engine.records import (
    Job,
    RerunOrigin,
    Run,
    RunStatus,
    StepAttempt,
    StoredEvent,
)
from mainspring.engine.run_search import RunPage
from mainspring.engine.store.contract import Store
from mainspring.errors import MainspringError, RunNotFoundError
from mainspring.protocol.expressions import Expression, compile_expression


def epoch_ms(moment: datetime.datetime) -> int:
    """Epoch milliseconds of ``moment`` (a naive one is local time)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def as_epoch_ms(moment: datetime.datetime | int | None) -> int | None:
    """:func:`epoch_ms` of a datetime; epoch milliseconds (an int) as they are."""
    if moment is None or isinstance(moment, int):
        return moment
    return epoch_ms(moment)


class EngineQueries:
    """Read-only queries over the engine's store and the state it keeps in memory."""

    clock: Clock
    _store: Store
    _executor: Executor
    _admission: Admission
    _held: HeldRuns
    _running: bool

    def _require_running(self) -> None:
        if not self._running:
            raise MainspringError("the engine is not running: use `async with engine:`")

    async def run(self, run_id: str) -> Run:
        """The run with this id; raises :class:`~mainspring.RunNotFoundError`."""
        self._require_running()
        found = await self._store.get_run(run_id)
        if found is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return self._current(found)

    def _current(self, stored: Run) -> Run:
        """A run as stored, or as it is now when its first call is out (it is running,
        which the store records with the call's answer)."""
        if stored.status.finished:
            return stored
        active = self._executor.active(stored.id)
        # Only "running" is taken from memory: a finish shows once it is read from the store
        # (a read that waited on the database may predate a finish already in memory).
        running = active is not None and active.status is RunStatus.RUNNING
        if running and stored.status is not RunStatus.RUNNING:
            assert active is not None
            return active.snapshot()
        return stored

    async def database_problem(self) -> str | None:
        """None when the store answers a query, else why it does not (``/health``)."""
        try:
            await self._store.ping()
        except Exception as exc:  # any failure to answer is the answer
            return " ".join(str(exc).split()) or type(exc).__name__
        return None

    async def history(self, run_id: str) -> list[StepAttempt]:
        """The run's steps in the order they ended, failed attempts included; while flow
        control holds the run back, a last ``Waiting`` entry says for what."""
        self._require_running()
        return await self._with_waiting(run_id, await self._store.history(run_id))

    async def histories(self, runs: Sequence[Run]) -> dict[str, list[StepAttempt]]:
        """:meth:`history` of each run, their steps read at once (in one query)."""
        self._require_running()
        found = await self._store.histories([run.id for run in runs])
        for run in runs:  # a finished run is held back by nothing
            if not run.status.finished:
                found[run.id] = await self._with_waiting(run.id, found[run.id])
        return found

    async def _with_waiting(self, run_id: str, entries: list[StepAttempt]) -> list[StepAttempt]:
        waiting = await self.waiting_for(run_id)
        if waiting is not None:
            since = waiting.get("since")
            entries.append(
                StepAttempt(
                    step_id=FLOW_STEP_ID,
                    user_id="",
                    op=WAITING_OP,
                    attempt=0,
                    started_at=since if isinstance(since, int) else None,
                    ended_at=self.clock.now_ms(),
                    output=waiting,
                    error=None,
                )
            )
        return entries

    async def waiting_for(self, run_id: str) -> dict[str, Any] | None:
        """What holds the run back: its function, not registered (``"function"``: the
        function, its app, since and until when it is held), or flow control (a concurrency
        slot, a throttle, its batch filling, a debounce, with the limit and the key); None
        if nothing."""
        self._require_running()
        held = self._held.waiting_for(run_id)
        if held is not None:
            return held
        return await self._admission.waiting_for(run_id)

    async def jobs(self, run_id: str) -> list[Job]:
        """The run's queued work, soonest first: planned steps, sleeps' wake-ups, waits'
        timeouts, the next call."""
        self._require_running()
        return await self._store.jobs_for_run(run_id)

    async def jobs_for_runs(self, run_ids: Sequence[str]) -> dict[str, list[Job]]:
        """:meth:`jobs` of each run, read at once (runs with none are left out)."""
        self._require_running()
        return await self._store.jobs_for_runs(run_ids)

    async def events(
        self, *, name: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[StoredEvent]:
        """Recent events, newest first (optionally only those named ``name``); ``before``
        is the internal id of the last event of the previous page."""
        self._require_running()
        return await self._store.list_events(name=name, limit=limit, before=before)

    async def list_runs(
        self,
        *,
        function_id: str | None = None,
        statuses: Sequence[RunStatus] | None = None,
        created_after: datetime.datetime | None = None,
        created_before: datetime.datetime | None = None,
        limit: int = 100,
        after: str | None = None,
        newest_first: bool = True,
        function_ids: Sequence[str] | None = None,
    ) -> list[Run]:
        """A page of runs in creation order (newest first by default), optionally of one
        function or of any of ``function_ids``, in some statuses, created in
        ``[created_after, created_before)``; ``after`` is the id of the last run of the
        previous page. One query, whatever the number of functions."""
        self._require_running()
        return await self._store.find_runs(
            function_id=function_id,
            function_ids=function_ids,
            statuses=None if statuses is None else [s.value for s in statuses],
            created_after=None if created_after is None else epoch_ms(created_after),
            created_before=None if created_before is None else epoch_ms(created_before),
            cursor=after,
            limit=limit,
            newest_first=newest_first,
        )

    async def search_runs(
        self,
        *,
        function_ids: Sequence[str] | None = None,
        statuses: Sequence[RunStatus] | None = None,
        created_after: datetime.datetime | int | None = None,
        created_before: datetime.datetime | int | None = None,
        expression: str | Expression | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        """A page of runs, newest first, filtered as the runs page and ``GET /v1/runs`` do:
        by function, status, creation time (a datetime, or epoch milliseconds as an int;
        ``[after, before)``) and a CEL ``expression`` on the triggering
        ``event`` (``events`` for a batch); ``cursor`` is the previous page's. A malformed
        expression raises :class:`~mainspring.protocol.expressions.ExpressionError`. See
        :mod:`mainspring.engine.run_search` for how an expression is evaluated in pages."""
        self._require_running()
        if isinstance(expression, str):
            expression = compile_expression(expression)
        page = await run_search.search(
            self._store,
            function_ids=function_ids,
            statuses=statuses,
            created_after=as_epoch_ms(created_after),
            created_before=as_epoch_ms(created_before),
            expression=expression,
            limit=limit,
            cursor=cursor,
        )
        return RunPage([self._current(run) for run in page.runs], page.cursor)

    async def rerun_origin(self, run_id: str) -> RerunOrigin | None:
        """Where a run came from, if a rerun started it (``Engine.rerun``)."""
        self._require_running()
        return (await self._store.rerun_origins([run_id])).get(run_id)

    async def rerun_origins(self, run_ids: Sequence[str]) -> dict[str, RerunOrigin]:
        """:meth:`rerun_origin` of each run, read at once (others are left out)."""
        self._require_running()
        return await self._store.rerun_origins(run_ids)

    async def event(self, event_id: str) -> StoredEvent | None:
        """One event by the id ``send`` returned."""
        self._require_running()
        return await self._store.get_event(event_id)

    async def run_events(
        self, run_id: str, *, limit: int | None = None
    ) -> tuple[list[StoredEvent], int]:
        """The events that started a run, in order (all of a batch's, as ``ctx.events``
        has them): the first ``limit`` of them (all with None), and how many there are.
        An event no longer stored is given as the run's copy of it, ``internal_id`` empty.
        """
        self._require_running()
        run = await self.run(run_id)
        raw = (await self._store.triggering_events([run.id])).get(run.id)
        copies = orjson.loads(raw) if raw else []
        copies = copies if isinstance(copies, list) else []
        shown = copies if limit is None else copies[:limit]
        if not shown:
            return [], len(copies)
        # The first is the run's own event; a batch filed the others by function and
        # event id (a primary key: looked up without reading every batch's events).
        keys = [f"{run.function_id}:{copy.get('id')}" for copy in shown[1:]]
        filed = await self._store.filed_events(keys) if keys else {}
        found = [await self._store.get_event(run.event_id), *(filed.get(k) for k in keys)]
        events = [
            stored if stored is not None else _unstored(copy)
            for stored, copy in zip(found, shown, strict=True)
        ]
        return events, len(copies)

    async def run_state(self, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """A run's events and memo map, as an SDK fetches them when ``use_api`` is set."""
        self._require_running()
        state = await self._store.load_run_state(run_id)
        if state is None:
            return None
        events = orjson.loads(state.events_json)
        return events, {s.step_id: orjson.loads(s.memo) for s in state.steps}

    async def runs(self, event_id: str) -> list[Run]:
        """The runs an event (by the id ``send`` returned) started."""
        self._require_running()
        return [self._current(run) for run in await self._store.runs_for_event(event_id)]

    async def runs_for_events(self, event_ids: Sequence[str]) -> dict[str, list[Run]]:
        """:meth:`runs` of each event, read at once (events with none are left out)."""
        self._require_running()
        found = await self._store.runs_for_events(event_ids)
        return {event: [self._current(run) for run in runs] for event, runs in found.items()}


def _unstored(copy: dict[str, Any]) -> StoredEvent:
    """A run's copy of an event (wire shape) that the events table no longer has."""
    data = copy.get("data")
    ts = copy.get("ts")
    when = ts if isinstance(ts, int) else 0
    return StoredEvent(
        "", str(copy.get("id", "")), str(copy.get("name", "")), data or {}, when, when
    )
