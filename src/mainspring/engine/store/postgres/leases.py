"""Job leases on a shared PostgreSQL database: which process runs which job.

A job row's ``lease_owner`` is the process that runs it and ``lease_until`` when that
ends unless renewed. A process runs only the jobs it holds:

* a job a unit creates that is due within half a lease is taken at once by the process
  that created it (no trip through the claim), unless another process holds a job of the
  same run: a run's jobs are run by one process at a time, whose copy of the run is then
  the only one being written;
* any other job is left to the claims (:func:`claim_jobs`): every process takes due jobs
  nobody holds, ``FOR UPDATE SKIP LOCKED``, soonest first, and whose run no other live
  process holds;
* a process renews its leases while it lives (:func:`renew_leases`); one that dies stops,
  and the first claim after its leases end frees its jobs for every process.

Concurrency limits are counted in one process's memory (``engine/flow/concurrency.py``),
so the jobs of every function with a limit are run by one process, the *flow leader*: the
one holding a session advisory lock (:data:`FLOW_LEADER`) on its write connection. Only it
takes or claims them; when it dies its connection goes, the lock with it, and the next
process to claim becomes the leader. A new leader starts limited calls only once no other
process holds a job of a limited function (a leader that lost its connection, and so its
lock, gives back the limited jobs it has not started and finishes those it has). A limit
of 1 is then 1 in the whole cluster.

Times are the engine clock's milliseconds, like ``run_at``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from mainspring.engine.records import Job
from mainspring.engine.store.rows import job_from_row

#: The session advisory lock of the flow leader (see above).
FLOW_LEADER = int.from_bytes(b"msLeader", "big")
#: The channel a process is woken on when jobs nobody holds may be due.
CHANNEL = "mainspring_jobs"
#: The channel that says which runs finished (for engines waiting on them elsewhere).
RUNS_CHANNEL = "mainspring_runs"
_JOB_COLUMNS = "job_id, run_id, kind, step_id, run_at, attempt, priority, data"


def new_owner() -> str:
    """A name for this process's leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class HeldJobs(set[str]):
    """The ids of the jobs this process holds, remembering those taken in the transaction
    being written: if it fails, they are forgotten (:meth:`undo`). Its commit may still
    have landed (the answer lost with the connection); the next renewal then finds them
    held and unknown, and queues them, instead of renewing jobs nobody here would run."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: set[str] = set()

    def add(self, job_id: str) -> None:
        if job_id not in self:
            self.taken.add(job_id)
            super().add(job_id)

    def update(self, *batches: Iterable[str]) -> None:
        for batch in batches:
            for job_id in batch:
                self.add(job_id)

    def undo(self) -> None:
        self.difference_update(self.taken)
        self.taken.clear()

    def keep(self) -> None:
        self.taken.clear()


@dataclasses.dataclass(slots=True)
class LeaseBook:
    """This process's side of the leases: its name, and the jobs it holds (a cache of the
    rows whose ``lease_owner`` it is, kept by the units that change them)."""

    owner: str
    lease_ms: int
    now: Callable[[], int]
    held: HeldJobs = dataclasses.field(default_factory=HeldJobs)
    #: Set by a unit that left a job for the claims: the transaction then notifies.
    notify: bool = False
    #: Runs finished in the transaction: the commit says so on :data:`RUNS_CHANNEL`.
    finished: list[str] = dataclasses.field(default_factory=list)
    #: The functions with concurrency limits, whose jobs only the flow leader runs.
    limited: frozenset[str] = frozenset()
    #: Whether this process is the flow leader (holds :data:`FLOW_LEADER`).
    leader: bool = False
    #: As leader: no other process holds a job of a limited function any more.
    clear: bool = False

    @property
    def leading(self) -> bool:
        """Whether this process runs the jobs of limited functions now."""
        return self.leader and self.clear

    def may_run(self, function_id: str | None) -> bool:
        """Whether this process may run a job of this function."""
        return self.leading or function_id is None or function_id not in self.limited


def held_elsewhere(db: psycopg.Connection[Any], book: LeaseBook, run_id: str, now: int) -> bool:
    """Whether another live process holds a job of this run."""
    row = db.execute(
        "SELECT 1 FROM jobs WHERE run_id = %s AND lease_owner IS NOT NULL "
        "AND lease_owner != %s AND lease_until > %s LIMIT 1",
        (run_id, book.owner, now),
    ).fetchone()
    return row is not None


def try_to_lead(db: psycopg.Connection[Any], book: LeaseBook) -> None:
    """Become the flow leader if no process is (only when this one runs limited functions)."""
    if not book.limited:
        return
    if not book.leader:
        row = db.execute("SELECT pg_try_advisory_lock(%s)", (FLOW_LEADER,)).fetchone()
        book.leader = bool(row and row[0])
    if book.leader and not book.clear:
        row = db.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs JOIN runs ON runs.run_id = jobs.run_id "
            "WHERE jobs.lease_owner IS NOT NULL AND jobs.lease_owner != %s "
            "AND jobs.lease_until > %s AND runs.function_id = ANY(%s))",
            (book.owner, book.now(), sorted(book.limited)),
        ).fetchone()
        book.clear = not (row and row[0])


def claim_jobs(db: psycopg.Connection[Any], book: LeaseBook, limit: int) -> list[Job]:
    """Take up to ``limit`` due jobs nobody holds; first free the jobs of leases that ran out."""
    try_to_lead(db, book)
    now = book.now()
    db.execute(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL "
        "AND lease_until <= %s AND lease_owner != %s",
        (now, book.owner),
    )
    rows = db.execute(
        "UPDATE jobs SET lease_owner = %s, lease_until = %s WHERE job_id IN ("
        "SELECT job_id FROM jobs AS due WHERE lease_owner IS NULL AND run_at <= %s "
        "AND NOT EXISTS (SELECT 1 FROM jobs AS other WHERE other.run_id = due.run_id "
        "AND other.lease_owner IS NOT NULL AND other.lease_owner != %s) "
        "AND (%s OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.run_id = due.run_id "
        "AND runs.function_id = ANY(%s))) "
        "ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"RETURNING {_JOB_COLUMNS}",
        (
            book.owner,
            now + book.lease_ms,
            now,
            book.owner,
            book.leading or not book.limited,
            sorted(book.limited),
            limit,
        ),
    ).fetchall()
    jobs = sorted((job_from_row(row) for row in rows), key=lambda job: job.run_at)
    book.held.update(job.id for job in jobs)
    return jobs


def renew_leases(db: psycopg.Connection[Any], book: LeaseBook) -> list[str]:
    """Push this process's leases out by one lease; forget those it no longer has. Returns
    the jobs the store says it holds that it did not know of: taken by a commit whose
    answer was lost with its connection (the caller queues them)."""
    rows = db.execute(
        "UPDATE jobs SET lease_until = %s WHERE lease_owner = %s RETURNING job_id",
        (book.now() + book.lease_ms, book.owner),
    ).fetchall()
    held = {str(row[0]) for row in rows}
    unknown = sorted(held - book.held)
    book.held.intersection_update(held)
    book.held.update(unknown)
    return unknown


def release_limited(db: psycopg.Connection[Any], book: LeaseBook, job_ids: list[str]) -> int:
    """Give back those of these jobs whose function has a concurrency limit: this process
    lost the flow leader's lock, and their turn is the next leader's."""
    rows = db.execute(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE job_id = ANY(%s) "
        "AND lease_owner = %s AND run_id IN (SELECT run_id FROM runs "
        "WHERE function_id = ANY(%s)) RETURNING job_id",
        (job_ids, book.owner, sorted(book.limited)),
    ).fetchall()
    book.held.difference_update(str(row[0]) for row in rows)
    book.notify = True
    return len(rows)


def release_leases(db: psycopg.Connection[Any], book: LeaseBook) -> int:
    """Give every job this process holds back to the claims (a drain)."""
    row = db.execute(
        "WITH freed AS (UPDATE jobs SET lease_owner = NULL, lease_until = NULL "
        "WHERE lease_owner = %s RETURNING 1) SELECT count(*) FROM freed",
        (book.owner,),
    ).fetchone()
    book.held.clear()
    book.notify = True
    return int(row[0]) if row else 0
