"""The dispatcher: take due jobs off the queue and run them, at most ``concurrency`` at a
time, each only once flow control admits it.

A worker that finishes a job runs the run's next job itself when it is due now (up to
:data:`MAX_INLINE_JOBS` in a row, then it goes back on the queue so other runs have a
turn): a run of sequential steps moves from step to step without a trip through the queue,
and keeps its concurrency slots when nothing ahead of it waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mainspring.engine.clock import Clock
from mainspring.engine.flow.admission import Admission, Verdict
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import Job
from mainspring.engine.store.contract import LeaseLostError, UnitUndoneError

logger = logging.getLogger("mainspring.engine")

#: Follow-up jobs a worker runs itself before handing the run back to the queue.
MAX_INLINE_JOBS = 64

#: Seconds before a job that failed on a store fault is read again and queued.
RETRY_SECONDS = 1.0

#: Runs one job; returns the run's next job when it is due now.
RunJob = Callable[[Job], Awaitable[Job | None]]


class Dispatcher:
    def __init__(
        self,
        *,
        queue: JobQueue,
        admission: Admission,
        clock: Clock,
        concurrency: int,
        run_job: RunJob,
        reload_job: Callable[[Job], Awaitable[Job | None]],
    ) -> None:
        self._queue = queue
        self._admission = admission
        self._clock = clock
        self._run_job = run_job
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._running_jobs: set[str] = set()
        self._reload = reload_job
        self._retrying: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Stop taking jobs and cancel those running (they run again on the next start)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in [*self._in_flight, *self._retrying]:
            task.cancel()
        await asyncio.gather(*self._in_flight, *self._retrying, return_exceptions=True)

    async def _retry(self, job: Job) -> None:
        """Queue the job again as the store has it, once the store answers."""
        try:
            while True:
                await asyncio.sleep(RETRY_SECONDS)
                try:
                    stored = await self._reload(job)
                except Exception:  # the store is still away
                    continue
                if stored is not None:
                    self._queue.push(stored)
                return
        finally:
            self._retrying.discard(asyncio.current_task())

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        admission = self._admission
        while True:
            await self._slots.acquire()
            while True:
                job = await self._queue.get()
                # Flow control decides without I/O whenever it can, so that a backlog held
                # on one key costs no task and never delays the jobs behind it.
                verdict = admission.check(job) if admission.enabled else Verdict.GO
                if verdict is Verdict.DUPLICATE:
                    logger.warning("job %s is already running; skipped a duplicate", job.id)
                elif verdict is not Verdict.HELD:
                    break
            task = loop.create_task(self._run(job, verdict))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _admitted(self, job: Job, verdict: Verdict | None) -> bool:
        """Whether flow control lets ``job`` go now (``verdict``: already checked)."""
        admission = self._admission
        if not admission.enabled:
            return True
        if verdict is None:
            verdict = admission.check(job)
        if verdict is Verdict.SLOW:
            return await admission.admit(job)
        return verdict is Verdict.GO

    async def _run(self, job: Job, verdict: Verdict) -> None:
        if job.id in self._running_jobs:
            # Never run one job twice at once; the running copy re-queues it if needed.
            logger.warning("job %s is already running; skipped a duplicate", job.id)
            self._slots.release()
            return
        next_job: Job | None = job
        checked: Verdict | None = verdict
        try:
            for _ in range(MAX_INLINE_JOBS):
                if next_job is None:
                    return
                job = next_job
                if not await self._admitted(job, checked):
                    return  # held by flow control, which queues it again when it may go
                self._running_jobs.add(job.id)
                next_job = None
                try:
                    next_job = await self._run_job(job)
                finally:
                    self._running_jobs.discard(job.id)
                    # The run's next call may keep this call's concurrency slots (then
                    # flow control lets it through when asked).
                    self._admission.done(job, next_job)
                checked = None
            if next_job is not None:
                self._queue.push(next_job)  # let other runs have a turn
        except asyncio.CancelledError:
            raise
        except LeaseLostError as lost:
            # This process stopped renewing in time and another took the job over.
            logger.info("%s; left to it", lost)
        except UnitUndoneError as undone:
            # Nothing wrong with this job: another unit of its transaction failed (and is
            # reported on its own). It goes on as the store has it, after the same pause.
            logger.warning("job %s of run %s: %s; retrying", job.id, job.run_id, undone)
            self._retrying.add(asyncio.get_running_loop().create_task(self._retry(job)))
        except Exception:
            # A transient store fault must not stall the run until the next restart: after
            # a pause, the job goes on as the store has it. Not as memory has it: a commit
            # whose answer was lost with its connection may have turned the job's row into
            # the run's next job, or finished the run.
            logger.exception("job %s of run %s failed; retrying", job.id, job.run_id)
            self._retrying.add(asyncio.get_running_loop().create_task(self._retry(job)))
        finally:
            self._slots.release()
