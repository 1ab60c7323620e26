"""The PostgreSQL store's write connection: one synchronous connection kept in pipeline mode.

In pipeline mode a statement goes out without waiting for its answer; the store waits only
where a unit reads an answer (a row, a row count), at a unit's end, and for the commit. On
loopback a round trip costs about as much as a small statement's whole execution, so a
transaction of ten writes costs about what one costs.

Write transactions all hold one cluster-wide advisory lock (:data:`WRITE_LOCK`). Taking it
is folded into the transaction's first round trip with ``pg_try_advisory_xact_lock``; only
when another process holds it does the store wait for it, in a thread of its own, so the
event loop runs on meanwhile.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import pq

#: The advisory lock every write transaction holds (``pg_advisory_xact_lock``): another key
#: than the migrations' so that a migration never waits for a process's writes.
WRITE_LOCK = int.from_bytes(b"msWrites", "big")


class Writer:
    """A write connection in pipeline mode, from connection to close."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._mode: contextlib.AbstractContextManager[psycopg.Pipeline] = conn.pipeline()
        self.pipe = self._mode.__enter__()

    @property
    def usable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    def begin(self) -> bool:
        """Open a transaction and try for the write lock, in one round trip: whether this
        transaction holds it (if not, :meth:`wait_for_lock`)."""
        self.conn.execute("BEGIN")
        row = self.conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (WRITE_LOCK,)).fetchone()
        return bool(row and row[0])

    def wait_for_lock(self) -> None:
        """Wait until the write lock is this transaction's (blocking: in a thread)."""
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)).fetchone()

    def commit(self) -> None:
        """Commit, and wait for the answer: the transaction is durable once this returns."""
        self.conn.execute("COMMIT")
        self.pipe.sync()

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
