"""The PostgreSQL store's write connection: one synchronous connection kept in pipeline mode.

In pipeline mode a statement goes out without waiting for its answer; the store waits only
where a unit reads an answer (a row, a row count), at a unit's end, and for the commit. On
loopback a round trip costs about as much as a small statement's whole execution, so a
transaction of ten writes costs about what one costs.

Write transactions all hold one cluster-wide advisory lock (:data:`WRITE_LOCK`). While no
other process has been seen holding it, taking it costs no round trip: it is asked for
with the transaction's first statements, waiting on the server's side, and its answer
comes with the first answer a unit waits for. A probe sent with it says whether it was
free; once it was not, the next transactions (for :data:`CAREFUL_SECONDS`) first try for
it, and wait for it in the store's own thread when another process holds it, so that the
event loop runs on meanwhile instead of waiting for the other process's transaction.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg
from psycopg import pq

#: The advisory lock every write transaction holds (``pg_advisory_xact_lock``): another key
#: than the migrations' so that a migration never waits for a process's writes.
WRITE_LOCK = int.from_bytes(b"msWrites", "big")
#: Seconds after the write lock was last found held by another process during which a
#: transaction tries for it before writing (the loop never waits for another process).
CAREFUL_SECONDS = 2.0
#: Seconds without a transaction after which the next one first checks that the connection
#: still works (the database may have restarted meanwhile), before any unit runs on it.
IDLE_CHECK_SECONDS = 1.0


class Writer:
    """A write connection in pipeline mode, from connection to close."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._mode: contextlib.AbstractContextManager[psycopg.Pipeline] = conn.pipeline()
        self.pipe = self._mode.__enter__()
        #: Until when (``time.monotonic()``) transactions try for the lock first.
        self._careful_until = 0.0
        #: The probe of the write lock sent with the open transaction's first statements.
        self._probe: psycopg.Cursor[Any] | None = None
        #: When (``time.monotonic()``) the last transaction ended.
        self._used_at = time.monotonic()

    @property
    def usable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    def begin(self) -> bool:
        """Open a transaction holding the write lock: whether it does now (if not, call
        :meth:`wait_for_lock`)."""
        self.conn.execute("BEGIN")
        probe = self.conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (WRITE_LOCK,))
        now = time.monotonic()
        if now < self._careful_until or now - self._used_at > IDLE_CHECK_SECONDS:
            # One round trip: whether another process, which wrote lately, still is; or,
            # after a while without writes, whether the connection still works (a broken
            # one raises here, before any unit ran, and the caller connects again).
            row = probe.fetchone()
            return bool(row and row[0])
        # Held now if the probe got it; if not, the server waits for it before running
        # anything sent after (the lock is taken twice in the same transaction at most).
        self._probe = probe
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        return True

    def _note_contention(self) -> None:
        """After the transaction: if its probe found the lock held, be careful for a while."""
        self._used_at = time.monotonic()
        probe, self._probe = self._probe, None
        if probe is not None and probe.pgresult is not None:
            row = probe.fetchone()
            if not (row and row[0]):
                self._careful_until = time.monotonic() + CAREFUL_SECONDS

    def wait_for_lock(self) -> None:
        """Wait until the write lock is this transaction's (blocking: in a thread)."""
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)).fetchone()

    def commit(self) -> None:
        """Commit, and wait for the answer: the transaction is durable once this returns."""
        self.conn.execute("COMMIT")
        self.pipe.sync()
        self._note_contention()

    def rollback_to(self, savepoint: str) -> None:
        """Undo what was written since the savepoint; the transaction goes on."""
        self.settle()
        self.conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
        self.pipe.sync()

    def roll_back(self) -> None:
        """Undo the whole transaction after a failure (a broken connection is closed, and
        the next transaction connects again)."""
        try:
            self.settle()
            self._note_contention()
            if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
                self.pipe.sync()
        except psycopg.Error:
            self.close()

    def settle(self) -> None:
        """Have every statement in flight answered; their error, if any, is the failure
        being handled (statements after a failed one in a pipeline are skipped until the
        next sync), so it is not raised again, unless the connection broke."""
        try:
            self.pipe.sync()
        except psycopg.Error:
            if not self.usable:
                raise

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._mode.__exit__(None, None, None)
        self.conn.close()
