"""Runs whose function is not registered: held, not failed.

A run outlives the deploy that started it. A deploy may drop a function for a while (an
app restarted without it, synced without it, or an embedded engine started without it)
while runs of it sleep or wait. When such a run next calls its function and finds it
missing (our transports answer ``function_not_found``, as SDKs do for a function they do
not serve), it is *held* instead of failed: it resumes when a start or a sync brings the
function back, and fails only after a grace period (``missing_function_grace``, 24 h by
default) with an error naming the function and the app that served it.

Everything that decides what becomes of a held run is in the store, so a held run is still
held after a restart or a SIGKILL, and resumes or expires the same way:

* a ``held_runs`` row: the function, the app that last served it (``function_apps``
  remembers it after a sync dropped the function), since when and until when;
* the call job that found the function missing, kept in ``jobs`` with ``run_at = until``:
  that job *is* the grace deadline. When it comes due, its call either finds the function
  (the run goes on) or not (the run fails): no timer lives in memory.

A start or a sync releases every held run whose function is registered again: its row is
deleted and its held jobs are moved to now, in one unit. The engine keeps a copy of the
rows in memory (loaded at start, updated by the units that write them) so that a call of a
run that is not held costs one dict lookup, and ``waiting_for`` needs no read.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from mainspring.engine.clock import Clock
from mainspring.engine.flow.skips import moment
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import HeldRun, Job, RunStatus
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.store.contract import Store, Tx
from mainspring.engine.unit import Unit
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.durations import MAX_DURATION_MS, format_duration
from mainspring.protocol.messages import CallResponse, ErrorPayload, Failure

logger = logging.getLogger("mainspring.engine")

#: How long a run waits for its missing function before it fails, by default.
DEFAULT_GRACE = datetime.timedelta(hours=24)

#: ``waiting_for`` of a held run (beside flow control's "concurrency", "batch", ...).
HELD_FOR = "function"

#: Unfinished runs counted when a sync drops their function (for the log line only).
_REPORT_LIMIT = 1000


def grace_ms(value: float | datetime.timedelta, option: str = "missing_function_grace") -> int:
    """The grace period in milliseconds; a value that is not a positive duration raises
    :class:`ValueError` naming ``option``."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{option} must be a number of seconds or a timedelta, got {value!r}")
    if not math.isfinite(seconds) or seconds * 1000 < 1 or seconds * 1000 > MAX_DURATION_MS:
        raise ValueError(f"{option} must be a positive duration (at least 1 ms), got {value!r}")
    return round(seconds * 1000)


def missing_function(response: CallResponse) -> bool:
    """Whether a call's answer says its function is not served (by us or by the app)."""
    return isinstance(response, Failure) and response.error.code == ErrorCode.FUNCTION_NOT_FOUND


def expired(held: HeldRun) -> ErrorPayload:
    """The error of a run whose function stayed missing for the whole grace period."""
    grace = format_duration(held.until - held.since)
    return ErrorPayload(
        name="FunctionNotFoundError",
        message=(
            f"function {held.function_id!r} of app {held.app!r} was not registered for "
            f"{grace} (since {moment(held.since)}): the run was held that long, then ended"
        ),
        code=ErrorCode.FUNCTION_NOT_FOUND.value,
    )


def describe(held: HeldRun) -> dict[str, Any]:
    """What a held run waits for, in the shape of flow control's ``waiting_for``."""
    return {
        "waiting_for": HELD_FOR,
        "function": held.function_id,
        "app": held.app,
        "since": held.since,
        "until": held.until,
        "message": (
            f"held: function {held.function_id!r} of app {held.app!r} is not registered "
            f"(since {moment(held.since)}); the run resumes when it is back, and fails at "
            f"{moment(held.until)}"
        ),
    }


class Finish(Protocol):
    """The executor's way to end a run inside a unit."""

    def __call__(
        self,
        unit: Unit,
        status: RunStatus,
        *,
        output: bytes | None = None,
        error: ErrorPayload | None = None,
    ) -> None: ...


#: Builds the unit that holds (or, past its grace, fails) the run of ``unit.job``.
Hold = Callable[[Unit, Finish], None]


class HeldRuns:
    """The engine's held runs: holding, releasing, expiring, describing.

    ``present`` tells whether a function is registered now; ``owner`` which synced app
    serves one now; ``local_app`` is the engine's own app (its client's id), the owner of
    in-process functions; ``on_release`` drops a released run's cached state.
    """

    def __init__(
        self,
        *,
        store: Store,
        queue: JobQueue,
        clock: Clock,
        grace: float | datetime.timedelta = DEFAULT_GRACE,
        present: Callable[[str], bool],
        owner: Callable[[str], str | None],
        local_app: str,
        on_release: Callable[[str], None],
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self.grace_ms = grace_ms(grace)
        self._present = present
        self._owner = owner
        self._local_app = local_app
        self._on_release = on_release
        #: The store's held runs, by run id.
        self._held: dict[str, HeldRun] = {}

    async def load(self) -> None:
        """Read the held runs (at start), and say which still wait for their function."""
        self._held = {held.run_id: held for held in await self._store.held_runs()}
        waiting = [h for h in self._held.values() if not self._present(h.function_id)]
        if waiting:
            logger.warning(
                "%d runs are held because their function is not registered (%s); they "
                "resume when it is, or fail at the end of their grace period",
                len(waiting),
                ", ".join(sorted({h.function_id for h in waiting})),
            )

    # -- at a call -----------------------------------------------------------------

    async def check(
        self, run: ActiveRun, job: Job, response: CallResponse, *, first: bool
    ) -> Hold | None:
        """After a call: the unit to record instead of ``response`` when it says the
        function is missing; None to record the response (a held run whose function
        answered is released first: it goes on)."""
        if missing_function(response):
            if first:
                # Nothing of this call is recorded: the run has not started.
                run.started_at = None
                run.status = RunStatus.QUEUED
            return self._hold
        held = self._held.get(run.run_id)
        if held is not None:
            # Its function is back without a sync or a start we saw (an app that came
            # back at the same URL): its other held jobs need not wait any longer.
            await self._release([held], keep=job.id)
        return None

    def _hold(self, unit: Unit, finish: Finish) -> None:
        run, job, tx, now = unit.run, unit.job, unit.tx, unit.now
        function_id = run.function_id
        held = tx.hold_run(
            HeldRun(
                run.run_id,
                function_id,
                self._app_of(tx, function_id),
                since=now,
                until=now + self.grace_ms,
            )
        )
        if now >= held.until:
            finish(unit, RunStatus.FAILED, error=expired(held))
            unit.after.append(lambda: self._expired(held))
            return
        # The job waits at the deadline; a release moves it back to now.
        tx.reschedule_job(job.id, run_at=held.until, attempt=job.attempt)
        unit.jobs.append(dataclasses.replace(job, run_at=held.until))
        unit.parked = True  # nothing to keep in memory while it waits
        unit.after.append(lambda: self._remember(held, first=held.since == now))

    def _app_of(self, tx: Tx, function_id: str) -> str:
        """The app that served ``function_id`` last: a synced app serving it now (which
        answered that it no longer does), the last app that synced it, or this engine's
        own app for an in-process function (its id is ``<app id>-<function>``)."""
        found = self._owner(function_id) or tx.function_app(function_id)
        if found:
            return found
        if function_id.startswith(f"{self._local_app}-"):
            return self._local_app
        return "(unknown)"

    def _remember(self, held: HeldRun, *, first: bool) -> None:
        self._held[held.run_id] = held
        if first:
            logger.warning(
                "run %s is held: function %r of app %r is not registered; it resumes when "
                "the function is back, or fails at %s",
                held.run_id,
                held.function_id,
                held.app,
                moment(held.until),
            )

    def _expired(self, held: HeldRun) -> None:
        self._held.pop(held.run_id, None)
        logger.warning(
            "run %s failed: function %r of app %r was not registered by the end of its "
            "grace period",
            held.run_id,
            held.function_id,
            held.app,
        )

    # -- when functions come back --------------------------------------------------------

    async def release(self, *, queue_jobs: bool = True) -> list[Job]:
        """Release every held run whose function is registered now (after a start or a
        sync); returns the jobs moved to now (queued too, unless ``queue_jobs`` is False:
        at start, the engine loads every job from the store next)."""
        back = [held for held in self._held.values() if self._present(held.function_id)]
        if not back:
            return []
        return await self._release(back, queue_jobs=queue_jobs)

    async def _release(
        self, back: Sequence[HeldRun], *, keep: str | None = None, queue_jobs: bool = True
    ) -> list[Job]:
        now = self._clock.now_ms()

        def unit(tx: Tx) -> list[Job]:
            moved: list[Job] = []
            for held in back:
                moved.extend(tx.release_held(held.run_id, held.until, now, keep))
            return moved

        jobs = await self._store.transact(unit)
        for held in back:
            self._held.pop(held.run_id, None)
            self._on_release(held.run_id)
            logger.info(
                "run %s resumes: function %r of app %r is registered again",
                held.run_id,
                held.function_id,
                held.app,
            )
        if queue_jobs:
            self._queue.replace_all(jobs)
        return jobs

    def forget(self, run_id: str) -> None:
        """The run finished (``finish_run`` deleted its row)."""
        self._held.pop(run_id, None)

    # -- what users see ------------------------------------------------------------------

    def waiting_for(self, run_id: str) -> dict[str, Any] | None:
        """Why the run is held, if it is."""
        held = self._held.get(run_id)
        return None if held is None else describe(held)

    async def report_dropped(self, app: str, function_ids: Collection[str]) -> None:
        """Log a sync (or a removal) that drops functions with runs in flight: those runs
        are held when they next call their function."""
        if not function_ids:
            return
        runs = await self._store.find_runs(
            function_ids=sorted(function_ids), unfinished=True, limit=_REPORT_LIMIT + 1
        )
        if not runs:
            return
        count = f"{len(runs)}" if len(runs) <= _REPORT_LIMIT else f"more than {_REPORT_LIMIT}"
        logger.warning(
            "app %r no longer serves %s, which %s runs in flight: each is held when it "
            "next calls its function, resumes if the function comes back, and fails after "
            "%s",
            app,
            ", ".join(repr(f) for f in sorted({run.function_id for run in runs})),
            f"have {count}",
            format_duration(self.grace_ms),
        )
