"""Due jobs, in memory.

The store holds every job durably; this queue holds the same jobs in the order they come
due so that workers never poll the database. Jobs are pushed after the transaction that
created them commits, and loaded from the store when the engine starts.

On a database several processes share, a process queues only the jobs it holds a lease on
(``owns``, see ``engine/claims.py``): a job pushed that it does not hold is left to the
process that does, and one whose lease it lost meanwhile is dropped when it comes due.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Callable, Sequence

from mainspring.engine.clock import Clock
from mainspring.engine.records import Job


class JobQueue:
    def __init__(self, clock: Clock, owns: Callable[[str], bool] | None = None) -> None:
        self._clock = clock
        self._owns = owns
        #: Ids of the jobs queued now: a job is queued once, whoever pushes it (on a shared
        #: database a unit's caller and a claim in the same transaction may both).
        self._queued: set[str] = set()
        self._ready: collections.deque[Job] = collections.deque()
        self._delayed: list[tuple[int, int, Job]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ready) + len(self._delayed)

    def queued(self) -> list[Job]:
        """The jobs queued now (due or not)."""
        return [*self._ready, *(entry[2] for entry in self._delayed)]

    def owns(self, job_id: str) -> bool:
        """Whether this process runs the job (always, unless the database is shared)."""
        return self._owns is None or self._owns(job_id)

    def push(self, job: Job) -> None:
        if not self.owns(job.id) or job.id in self._queued:
            return
        self._queued.add(job.id)
        if job.run_at <= self._clock.now_ms():
            self._ready.append(job)
        else:
            heapq.heappush(self._delayed, (job.run_at, next(self._order), job))
        self._wake.set()

    def push_front(self, job: Job) -> None:
        """Queue a due job ahead of every other (it waited for a slot already)."""
        if not self.owns(job.id) or job.id in self._queued:
            return
        self._queued.add(job.id)
        self._ready.appendleft(job)
        self._wake.set()

    def replace(self, job: Job) -> None:
        """Queue ``job`` in place of any copy of it already queued (its time changed).

        O(queued jobs), for rare moves (a batch that fills before its timeout)."""
        self.replace_all([job])

    def replace_all(self, jobs: Sequence[Job]) -> None:
        """:meth:`replace` for many jobs in one pass (the held runs a sync releases)."""
        ids = {job.id for job in jobs}
        self._queued -= ids
        if any(entry[2].id in ids for entry in self._delayed):
            self._delayed = [entry for entry in self._delayed if entry[2].id not in ids]
            heapq.heapify(self._delayed)
        if any(queued.id in ids for queued in self._ready):
            self._ready = collections.deque(q for q in self._ready if q.id not in ids)
        for job in jobs:
            self.push(job)

    def _promote_due(self) -> None:
        now = self._clock.now_ms()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._ready.append(heapq.heappop(delayed)[2])

    async def get(self) -> Job:
        """The next due job, waiting for one if needed."""
        while True:
            self._promote_due()
            while self._ready:
                job = self._ready.popleft()
                self._queued.discard(job.id)
                if self.owns(job.id):
                    return job
            self._wake.clear()
            until = self._delayed[0][0] if self._delayed else self._clock.now_ms() + 3_600_000
            await self._clock.wait(self._wake, until)
