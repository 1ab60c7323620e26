"""Time skipping on the real embedded engine: a function that sleeps three days, or waits
three days for an event, finishes in a test in milliseconds.

:func:`time_machine` starts an :class:`~mainspring.Engine` on a temporary SQLite file with
a :class:`~mainspring.ManualClock`, which only moves when told. Everything the engine
schedules (sleeps, waits' timeouts, retries' backoff, invokes' timeouts) is a job due at a
time on that clock, so moving the clock runs it. :class:`TimeMachine` moves it the way real
time would pass: it lets the engine finish everything due now (:meth:`TimeMachine.settle`),
then jumps to the next scheduled job, and so on, never past a timer without running it.

"The engine has nothing due now" is read from the store: every unfinished run's queued
jobs lie in the future (or flow control holds the run, waiting for another to finish). A
job being run is still in the store until its result is recorded, so a run that is
mid-call never looks idle.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mainspring.engine.clock import ManualClock
from mainspring.engine.engine import Engine
from mainspring.engine.records import Job, Run, RunStatus
from mainspring.sdk.client import Client
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function

_UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)
#: Real seconds between two looks at the store while waiting for the engine to settle.
_POLL_SECONDS = 0.002
_PAGE = 500

Duration = float | datetime.timedelta


def _ms(duration: Duration) -> int:
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration
    if seconds < 0:
        raise ValueError(f"time only moves forward; got {duration!r}")
    return round(seconds * 1000)


class TimeMachine:
    """An embedded engine and the manual clock it runs on, with ways to move the clock.

    ``engine`` is the :class:`~mainspring.Engine` (send events, read runs and histories);
    ``clock`` the :class:`~mainspring.ManualClock`.
    """

    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.engine = engine
        self.clock = clock

    @property
    def now(self) -> datetime.datetime:
        """The engine's time (UTC)."""
        return datetime.datetime.fromtimestamp(self.clock.now_ms() / 1000, datetime.UTC)

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send events to the engine (as ``client.send``); returns their ids."""
        return await self.engine.send(events)

    async def start(self, event: Event) -> str:
        """Send an event that starts exactly one run; its id."""
        [event_id] = await self.engine.send(event)
        runs = await self.engine.runs(event_id)
        if len(runs) != 1:
            raise AssertionError(f"event {event.name!r} started {len(runs)} runs, expected 1")
        return runs[0].id

    async def trigger(self, event: Event, *, timeout: float = 10.0) -> Run:
        """Start one run and let time pass until it finishes (:meth:`fast_forward`)."""
        return await self.fast_forward(await self.start(event), timeout=timeout)

    async def settle(self, *, timeout: float = 10.0) -> None:
        """Wait (in real time, at most ``timeout`` seconds) until the engine has nothing due
        now: every unfinished run waits on a timer, an event or another run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = await self._busy_run()
            if busy is None:
                return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"the engine did not settle within {timeout:g} s: run {busy} still has "
                    "work due (a step that does not return?)"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def advance(self, by: Duration, *, timeout: float = 10.0) -> None:
        """Let ``by`` (seconds or a timedelta) pass: every timer due meanwhile fires in
        order, each once the engine has done what the one before started."""
        target = self.clock.now_ms() + _ms(by)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.settle(timeout=max(deadline - loop.time(), 0.0))
            following = await self._next_timer()
            if following is None or following > target:
                break
            self._move_to(following)
        self._move_to(target)
        await self.settle(timeout=max(deadline - loop.time(), 0.0))

    async def fast_forward(self, run_id: str, *, timeout: float = 10.0) -> Run:
        """Let time pass, timer after timer, until the run finishes; returns it.

        A run waiting for an event it is not sent meets its timeout this way (the wait
        returns ``None``): send the event first to test the other branch.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.settle(timeout=max(deadline - loop.time(), 0.0))
            run = await self.engine.run(run_id)
            if run.status.finished:
                return run
            following = await self._next_timer()
            if following is None:
                waiting = await self.engine.waiting_for(run_id)
                raise AssertionError(
                    f"run {run_id} cannot finish: nothing is scheduled for it"
                    + ("" if waiting is None else f" (waiting for {waiting})")
                )
            self._move_to(following)

    # -- reading the store -----------------------------------------------------------

    def _move_to(self, at_ms: int) -> None:
        ahead = at_ms - self.clock.now_ms()
        if ahead > 0:
            self.clock.advance(ahead / 1000)
            # advance() takes float seconds: never stop a millisecond short of a timer.
            if self.clock.now_ms() < at_ms:
                self.clock.advance((at_ms - self.clock.now_ms()) / 1000 + 0.0005)

    async def _unfinished_jobs(self) -> dict[str, list[Job]]:
        run_ids: list[str] = []
        after: str | None = None
        while True:
            page = await self.engine.list_runs(
                statuses=_UNFINISHED, limit=_PAGE, after=after, newest_first=False
            )
            run_ids.extend(run.id for run in page)
            if len(page) < _PAGE:
                break
            after = page[-1].id
        if not run_ids:
            return {}
        return await self.engine.jobs_for_runs(run_ids)

    async def _busy_run(self) -> str | None:
        """A run with work due now that nothing holds back, if any."""
        now = self.clock.now_ms()
        for run_id, jobs in (await self._unfinished_jobs()).items():
            # Flow control holding a run back is waiting, not work.
            due = any(job.run_at <= now for job in jobs)
            if due and await self.engine.waiting_for(run_id) is None:
                return run_id
        return None

    async def _next_timer(self) -> int | None:
        """When the earliest job scheduled after now comes due (None: there is none)."""
        now = self.clock.now_ms()
        times = [
            job.run_at
            for jobs in (await self._unfinished_jobs()).values()
            for job in jobs
            if job.run_at > now
        ]
        return min(times, default=None)


@asynccontextmanager
async def time_machine(
    client: Client,
    functions: Iterable[Function[Any]],
    *,
    database: str | os.PathLike[str] | None = None,
    start: datetime.datetime | None = None,
    **engine_options: Any,
) -> AsyncIterator[TimeMachine]:
    """``async with time_machine(client, [fn]) as tm:`` an engine on a manual clock.

    ``database`` defaults to a file in a temporary directory removed afterwards (the
    engine's SQLite store needs a file: it opens a writer and readers on it). ``start`` is
    the clock's starting time (default: now). Other keywords go to
    :class:`~mainspring.Engine`; ``durability`` defaults to ``"normal"`` for speed.
    """
    start_ms = None if start is None else int(start.timestamp() * 1000)
    clock = ManualClock(start_ms)
    engine_options.setdefault("durability", "normal")
    with tempfile.TemporaryDirectory(prefix="mainspring-test-") as folder:
        where = database if database is not None else os.path.join(folder, "mainspring.db")
        async with Engine(client, functions, database=where, clock=clock, **engine_options) as e:
            yield TimeMachine(e, clock)


#: What the pytest fixture ``mainspring_time_machine`` gives: :func:`time_machine` with the
#: database in the test's ``tmp_path``.
TimeMachineFactory = Callable[..., AbstractAsyncContextManager[TimeMachine]]
