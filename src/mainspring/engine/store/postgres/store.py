"""PostgreSQL backend: the store contract on a database that many engine processes share.

Writes. Units are gathered while a transaction is in flight and run together in the next
one (group commit), each in a savepoint of its own, as on SQLite. Every write transaction
first takes one cluster-wide advisory lock (``writer.WRITE_LOCK``), so write transactions
of all processes run one at a time: a unit's read-then-write (a rate limit's cell, a batch's
hold, the last member of a parallel group leaving the pending set) sees every write made
before it, exactly as on SQLite's single writer, and no unit ever meets a deadlock or a
serialization failure that would have it run twice. Group commit keeps the lock cheap: one
transaction carries every unit a process gathered meanwhile.

Units run on the event loop's thread, on one synchronous connection in pipeline mode
(``writer.py``: a unit waits for the database only where it reads), and the commit follows
them without the loop running anything in between: units update the executor's in-memory
copies of runs, which readers on the loop take as recorded, as on SQLite. Only the wait for
the write lock (another process may hold it) is handed to a thread of the store's own, so
the loop runs on meanwhile; units sent while it waits join the next transaction.

Reads go through a small pool of asynchronous connections and see what has committed.

Durability: ``"full"`` is ``synchronous_commit = on`` (a commit survives a crash of the
database server); ``"normal"`` is ``off`` (an engine process killed at any moment still
loses nothing it was told was recorded, but a crash of the database server itself may
lose the last fraction of a second of commits).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool

from mainspring.engine.clock import Clock, SystemClock
from mainspring.engine.store.contract import UnitUndoneError
from mainspring.engine.store.postgres import migrate
from mainspring.engine.store.postgres.leases import (
    CHANNEL,
    RUNS_CHANNEL,
    LeaseBook,
    new_owner,
)
from mainspring.engine.store.postgres.reads import PostgresReads
from mainspring.engine.store.postgres.tx import PostgresTx
from mainspring.engine.store.postgres.writer import Writer

T = TypeVar("T")
Durability = Literal["full", "normal"]

#: A unit waiting for its transaction, and the future its result goes to.
_Queued = tuple[Callable[[PostgresTx], Any], asyncio.Future[Any]]
#: How long a process holds a job it stopped renewing (it died, or lost the database).
DEFAULT_LEASE_SECONDS = 30.0
#: Run ids per notice of finished runs (a payload holds at most 8,000 bytes).
RUNS_PER_NOTICE = 200
#: Seconds between attempts to listen again after the listening connection was lost.
LISTEN_RETRY_SECONDS = 1.0
#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT = 10


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached, or refused the credentials."""


def describe_url(url: str) -> str:
    """Where a URL points, for messages: host, port, database and user, never a password."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an invalid postgresql:// URL"
    host = parts.get("host") or "localhost (Unix socket)"
    port = parts.get("port") or "5432"
    return f"{host}:{port} (database {parts.get('dbname') or '?'!r}, user {parts.get('user')!r})"


class PostgresStore(PostgresReads):
    """A :class:`~mainspring.engine.store.contract.Store` on a PostgreSQL database."""

    #: Jobs are claimed from the store under leases, by every process sharing it.
    shared = True

    def __init__(
        self,
        url: str,
        *,
        durability: Durability = "full",
        clock: Clock | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', got {durability!r}")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
        super().__init__()
        now = (clock or SystemClock()).now_ms
        self.leases = LeaseBook(new_owner(), int(lease_seconds * 1000), now)
        self.owner = self.leases.owner
        self.lease_ms = self.leases.lease_ms
        self.url = url
        self.durability: Durability = durability
        self.where = describe_url(url)
        self._write: Writer | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "mainspring-pg-writer")
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        self._closing = False
        loop = asyncio.get_running_loop()
        self._write = await loop.run_in_executor(self._thread, self._connect_and_migrate)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            # A read waits this long for a connection while the database is away.
            timeout=CONNECT_TIMEOUT,
            open=False,
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        self._pool = pool

    def _connect_and_migrate(self) -> Writer:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {self.where}: {reason}"
            ) from None
        try:
            migrate.migrate(conn)
            sync = "on" if self.durability == "full" else "off"
            conn.execute(f"SET synchronous_commit = {sync}")
            return Writer(conn)
        except BaseException:
            conn.close()
            raise

    async def close(self) -> None:
        self._closing = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._write is not None:
            self._write.close()
            self._write = None

    # -- writes ----------------------------------------------------------------------

    async def transact(self, unit: Callable[[PostgresTx], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((unit, future))
        if self._flusher is None:
            # Started on the next turn of the loop: units sent in this turn share it.
            self._flusher = loop.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._flush(batch)
                except BaseException as exc:
                    # A fault of the flush itself: no unit's caller may wait forever.
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    raise
        finally:
            self._flusher = None

    async def _flush(
        self, batch: list[tuple[Callable[[PostgresTx], Any], asyncio.Future[Any]]]
    ) -> None:
        writer: Writer | None = None
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            writer = await self._begin()
            # On the loop's thread, not awaited: units have already updated in-memory state
            # (the executor's copies of runs) that readers take as recorded, so nothing
            # else may run on the loop between the units and their commit.
            tx = PostgresTx(writer.conn, self.leases, writer.pipe)
            alone = len(batch) == 1
            index = 0
            while index < len(batch):
                unit = batch[index][0]
                ran = False
                try:
                    if not alone:
                        # Not released after the unit (it would cost a statement a unit).
                        # Inside the try: sending a statement may bring the answer that an
                        # earlier unit failed.
                        tx.begin_unit(index)
                    ran = True
                    outcomes.append((unit(tx), None))
                    tx.end_unit()
                except Exception as exc:
                    if alone:
                        raise  # the whole transaction is undone
                    first, undone = _undo(writer, tx, index, exc)
                    if not ran and first < index:
                        # An earlier unit's failure came before this one ran: it runs now.
                        undone.pop()
                        outcomes[first:] = undone
                        continue
                    outcomes[first:] = undone
                index += 1
            # Every answer in, every lease a unit relied on confirmed, before the commit.
            while failure := _first_failure(writer, tx, len(batch)):
                if alone:
                    raise failure[1]
                first, undone = _undo(writer, tx, len(batch) - 1, failure[1], failure[0])
                outcomes[first:] = undone
            self._announce(writer.conn)
            writer.commit()
            self.leases.held.keep()
        except Exception as exc:
            self.leases.held.undo()
            if writer is not None:
                writer.roll_back()
            outcomes = [(None, exc)] * len(batch)
        for (_, future), (result, error) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _announce(self, db: psycopg.Connection[Any]) -> None:
        """Send the transaction's notices; they are delivered at its commit."""
        finished, self.leases.finished = self.leases.finished, []
        for start in range(0, len(finished), RUNS_PER_NOTICE):
            # Engines waiting for these runs elsewhere wake.
            chunk = ",".join(finished[start : start + RUNS_PER_NOTICE])
            db.execute("SELECT pg_notify(%s, %s)", (RUNS_CHANNEL, chunk))
        if self.leases.notify:
            # To every process listening (engine/claims.py): jobs nobody holds.
            self.leases.notify = False
            db.execute(f"NOTIFY {CHANNEL}")

    # -- claims (engine/claims.py) ------------------------------------------------------

    def holds(self, job_id: str) -> bool:
        return job_id in self.leases.held

    @property
    def leading(self) -> bool:
        return self.leases.leading

    def set_limited(self, function_ids: Iterable[str]) -> None:
        self.leases.limited = frozenset(function_ids)

    async def next_claimable(self) -> int | None:
        """When a claim may next find something: the soonest due job nobody holds, or the
        soonest end of another process's lease (None: no such job)."""
        row = await self._row(
            "SELECT (SELECT min(run_at) FROM jobs WHERE lease_owner IS NULL), "
            "(SELECT min(lease_until) FROM jobs WHERE lease_owner IS NOT NULL "
            "AND lease_owner != %s)",
            (self.owner,),
        )
        found = [int(value) for value in (row or ()) if value is not None]
        return min(found) if found else None

    async def listen(
        self,
        wake: Callable[[], None],
        finished: Callable[[list[str] | None], None],
        ready: asyncio.Event,
    ) -> None:
        """Call ``wake`` whenever a process commits jobs nobody holds, and ``finished`` with
        the runs a process finished (until cancelled); set ``ready`` once listening. A lost
        connection is made again; notices sent meanwhile are lost, so then ``wake`` is
        called and ``finished`` with None (any run may have finished)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    if ready.is_set():
                        wake()
                        finished(None)
                    ready.set()
                    async for notice in conn.notifies():
                        if notice.channel == RUNS_CHANNEL:
                            finished(notice.payload.split(","))
                        else:
                            wake()
            except psycopg.Error:
                await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def _begin(self) -> Writer:
        """Open a write transaction holding the write lock (see writer.py). A reconnection,
        and the wait for the lock while another process holds it, run in the store's
        thread, so the loop runs on meanwhile."""
        loop = asyncio.get_running_loop()
        for last_try in (False, True):
            if self._closing:
                raise RuntimeError("the store is closed")
            writer = self._write
            if writer is None or not writer.usable:
                writer = await loop.run_in_executor(self._thread, self._reconnect)
            try:
                if not writer.begin():
                    await loop.run_in_executor(self._thread, writer.wait_for_lock)
            except psycopg.OperationalError:
                # Found cut before any unit ran (the database restarted while this process
                # was idle): connect again, and no unit fails for it.
                if last_try:
                    raise
                writer.close()
                continue
            return writer
        raise AssertionError("unreachable")

    def _reconnect(self) -> Writer:
        """Connect again (in the store's thread): the database restarted, or the connection
        was cut. The units of the batch that met the break failed and are retried by their
        callers (a job after a pause, an event by its sender); nothing committed is lost."""
        if self._write is not None:
            self._write.close()
        self._write = None
        # The flow leader's lock went with the old connection (engine/claims.py).
        self.leases.leader = self.leases.clear = False
        writer = self._write = self._connect_and_migrate()
        return writer


def _first_failure(writer: Writer, tx: PostgresTx, size: int) -> tuple[int, BaseException] | None:
    """Once every answer is in: the first unit of the batch that failed, and why."""
    try:
        tx.answers.wait()
    except psycopg.Error as exc:
        if not writer.usable:
            raise
        found = tx.answers.first_failure()
        return (size - 1 if found is None else found[0]), exc
    found = tx.answers.first_failure()
    if found is None:
        return None
    unit, lost = found
    assert lost is not None  # a statement that failed raised above
    return unit, lost


def _undo(
    writer: Writer, tx: PostgresTx, failed: int, error: BaseException, first: int | None = None
) -> tuple[int, list[tuple[Any, BaseException | None]]]:
    """Unit ``failed`` of the batch raised ``error``: undo the transaction back to the first
    unit that failed (``first`` if known; else it is found from the answers, and is that
    unit itself unless an earlier unit's statement or lease failed). Returns that unit, and
    the outcomes of the units undone: its own and those after it, up to ``failed``."""
    if first is None:
        writer.settle()
        found = tx.answers.first_failure()
        first = failed
        if found is not None and found[0] <= failed:
            first, lost = found
            error = lost if lost is not None else error
    writer.rollback_to(f"u{first}")
    tx.undone(first)
    undone = UnitUndoneError(
        f"undone with unit {first} of its transaction, which failed: {error}; not recorded"
    )
    outcomes: list[tuple[Any, BaseException | None]] = [(None, error)]
    return first, outcomes + [(None, undone)] * (failed - first)
