"""Claims: how an engine process sharing its database with others gets its jobs.

On SQLite one process owns every job, loaded into its queue at start. On a shared database
(PostgreSQL) a process runs only the jobs it holds a lease on (``store/postgres/leases.py``):
the jobs its own units create that are due soon, and those it claims here. The claimer
sleeps until the soonest moment a claim could find something (a due job nobody holds, or
another process's lease running out), or until a process commits jobs nobody holds
(``LISTEN``/``NOTIFY``), then takes due jobs in one unit and queues them. No process polls:
an idle cluster costs a few queries a minute per process.

The jobs of functions with concurrency limits go to one process, the flow leader, whose
memory counts the slots (``store/postgres/leases.py``); the first process to claim after
a leader is gone becomes the next one, and counts the run-level slots of runs in flight.

While it lives, a process renews its leases every third of a lease; one that dies stops,
and its jobs go to the others once the leases end. :meth:`JobClaims.stop` gives every
held job back at once (a drain), so that a restart or a deploy hands work over without
waiting for leases to run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mainspring.engine.clock import Clock
from mainspring.engine.records import Job
from mainspring.engine.store.contract import SharedStore

logger = logging.getLogger("mainspring.engine")

#: Jobs one claim takes at most (another follows at once when it took that many).
CLAIM_BATCH = 256
#: Milliseconds between looks when nothing is known to come due (a safety net: notices and
#: due times cover everything, but a notice may be lost with a connection).
IDLE_LOOK_MS = 10_000
#: Milliseconds before looking again when due jobs could not be claimed (their run is held
#: by another process, which will take them).
BLOCKED_LOOK_MS = 1_000
#: Seconds start waits for the notices' connection.
LISTEN_TIMEOUT_SECONDS = 10.0
#: Seconds before a failed claim or renewal is tried again (the database is away).
RETRY_SECONDS = 1.0


class JobClaims:
    def __init__(
        self,
        *,
        store: SharedStore,
        clock: Clock,
        lease_ms: int,
        on_claimed: Callable[[list[Job]], None],
        on_leading: Callable[[], Awaitable[None]],
        on_lost_lead: Callable[[], Awaitable[None]],
        on_finished: Callable[[list[str] | None], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease_ms = lease_ms
        self._on_claimed = on_claimed
        self._on_leading = on_leading
        self._on_lost_lead = on_lost_lead
        self._on_finished = on_finished
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start claiming; return once listening (a notice sent before would be missed)."""
        loop = asyncio.get_running_loop()
        listening = asyncio.Event()
        self._tasks = [
            loop.create_task(self._store.listen(self.wake, self._on_finished, listening)),
            loop.create_task(self._claim_loop()),
            loop.create_task(self._renew_loop()),
        ]
        try:
            await asyncio.wait_for(listening.wait(), LISTEN_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("not listening for notices yet; claims look every few seconds")

    def wake(self) -> None:
        """Look for due jobs now (a notice came, or the caller knows of some)."""
        self._wake.set()

    async def stop(self, *, release: bool = True) -> None:
        """Stop claiming and renewing; with ``release``, give every held job back."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if release:
            try:
                released = await self._store.transact(lambda tx: tx.release_leases())
                logger.info("stopped: %d held jobs given back to the other processes", released)
            except Exception:  # the leases then end on their own
                logger.warning(
                    "could not give the held jobs back; they return when their leases end",
                    exc_info=True,
                )

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            looked = self._clock.now_ms()
            try:
                leading = self._store.leading
                claimed = await self._store.transact(lambda tx: tx.claim_jobs(CLAIM_BATCH))
                if self._store.leading and not leading:
                    logger.info("this process now runs the functions with concurrency limits")
                    await self._on_leading()
                elif leading and not self._store.leading:
                    logger.warning(
                        "this process lost the lead of the functions with concurrency limits "
                        "(its database connection was lost); their queued jobs go back"
                    )
                    await self._on_lost_lead()
                if claimed:
                    self._on_claimed(claimed)
                if len(claimed) == CLAIM_BATCH:
                    continue
                soonest = await self._store.next_claimable()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("claiming jobs failed; trying again", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            now = self._clock.now_ms()
            until = now + IDLE_LOOK_MS
            if soonest is not None:
                if soonest > looked:
                    until = min(until, soonest)  # due then, or since the claim looked
                else:
                    # Due when the claim looked, yet not taken: its run is held by a live
                    # process, which takes it (or whose lease ends, which `soonest` tells).
                    until = min(until, now + BLOCKED_LOOK_MS)
            await self._clock.wait(self._wake, until)

    async def _renew_loop(self) -> None:
        every = self._lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                unknown = await self._store.transact(lambda tx: tx.renew_leases())
                if unknown:
                    # A claim or a unit committed though its answer was lost: queue what
                    # it took, or nobody would run it while this process renews it.
                    self._on_claimed(await self._store.jobs_by_id(unknown))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("renewing job leases failed; trying again", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
