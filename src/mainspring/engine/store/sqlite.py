"""SQLite backend: one engine process per database file, WAL, group commit.

Durability: ``durability="full"`` (``synchronous=FULL``) makes every commit durable
against power loss; ``"normal"`` (``synchronous=NORMAL``) against a crash or SIGKILL of
the process, which is what the tests kill, but not against losing power.

Writes from concurrent workers are gathered into one transaction per event-loop turn
(group commit): a unit waits at most for the commit it rides in, and under load many
steps share one fsync. The commit runs on the event loop's thread; SQLite has one writer
anyway, and handing the work to a thread costs more than it saves at these sizes.

A lock file next to the database keeps a second engine process off the same file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

from mainspring.engine.records import (
    HeldRun,
    Hold,
    HoldKind,
    Job,
    RerunOrigin,
    Run,
    StepAttempt,
    StoredEvent,
)
from mainspring.engine.store import wal_writes
from mainspring.engine.store.backend import URL_SCHEME, DatabaseLockedError, Durability
from mainspring.engine.store.contract import RunState, StepRecord
from mainspring.engine.store.rows import (
    ATTEMPT_HISTORY_COLUMNS,
    FINISHED_SQL,
    HELD_COLUMNS,
    RUN_COLUMNS,
    STEP_HISTORY_COLUMNS,
    Dialect,
    blob,
    histories,
    job_from_row,
    read_event,
    read_run,
    run_from_row,
    run_query,
)
from mainspring.engine.store.sqlite_tx import SQLiteTx

T = TypeVar("T")

#: The page size of a new database file. A one-step run's commit writes about a dozen
#: pages (the rows' leaves in events, runs and its indexes, jobs, steps), each holding a
#: few small rows: half-size pages halve the bytes each commit appends to the WAL and
#: syncs, and each checkpoint copies. Measured on the bench VM: a one-step run's
#: statements and commit, alone, 157 -> 125 us ("normal"); 12 alternated pairs of (c)
#: "full" rounds, ahead in 8, by about 6-10% (the VM's own drift is +-20%). Values of a
#: megabyte cost about 20% more to write and read (twice the overflow pages); runs'
#: payloads are small far more often than not.
PAGE_SIZE = 2048

#: WAL bytes between automatic checkpoints: SQLite's default (1,000 pages) at its default
#: 4,096-byte page. Counted in pages, the default would have halved with ``PAGE_SIZE`` and
#: doubled the checkpoints (each syncs the WAL and the database file): 8 alternated pairs
#: of (c) "full" rounds were all ahead with the bytes kept, by about 1%.
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an earlier version up to the schema."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "admitted_at" not in columns:
        # Runs stored before flow control had no start gates.
        db.execute("ALTER TABLE runs ADD COLUMN admitted_at INTEGER")
        db.execute("UPDATE runs SET admitted_at = created_at")
    if "app_version" not in columns:
        # Stored before app versions were recorded: unknown (NULL).
        db.execute("ALTER TABLE runs ADD COLUMN app_version TEXT")
    step_columns = {row[1] for row in db.execute("PRAGMA table_info(steps)")}
    if "app_version" not in step_columns:
        db.execute("ALTER TABLE steps ADD COLUMN app_version TEXT")
    if "copied_from" not in step_columns:
        # Copies made before reruns kept their origin: unknown (NULL), timed at the copy.
        db.execute("ALTER TABLE steps ADD COLUMN copied_from TEXT")


#: SQLite writes a list parameter as one ``?`` per item.
SQLITE = Dialect("?", lambda column, values: (f"{column} IN ({_marks(values)})", list(values)))


def _marks(items: Sequence[Any]) -> str:
    """Placeholders for ``IN (...)``: ``NULL`` for none, which matches nothing."""
    return ", ".join("?" * len(items)) or "NULL"


class SQLiteStore:
    """A :class:`~mainspring.engine.store.contract.Store` on one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, durability: Durability = "full") -> None:
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = os.fspath(path)
        scheme = URL_SCHEME.match(self.path)
        if scheme is not None:
            # Taken as a path, "postgresql://..." would quietly become a SQLite file in a
            # folder named "postgresql:". The URL itself is not repeated: it may carry a
            # password. (Engine(database=...) picks the backend: engine/store/backend.py.)
            raise ValueError(
                f"database={scheme.group(1)}://...: SQLiteStore takes a file path, such as "
                "'mainspring.db'; a postgresql:// URL is opened by PostgresStore"
            )
        if self.path == ":memory:" or self.path.startswith("file:") or not self.path:
            # The store writes on one connection and reads on another: they must share a
            # file, and that file's lock is what keeps a second engine off it.
            raise ValueError(
                f"database={self.path!r}: the engine needs a file path (a temporary "
                "directory's file for throwaway runs), not an in-memory or URI database"
            )
        self.durability: Durability = durability
        self._write: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: list[tuple[Callable[[SQLiteTx], Any], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._pause_paths: dict[str, set[str | None]] = {}
        #: The VFS the write connection uses: "mainspring-wal" (wal_writes.py), or None
        #: for SQLite's default. Set by open().
        self.wal_vfs: str | None = None

    async def open(self) -> None:
        # Opening is a one-off at start-up; blocking the loop briefly here is fine.
        directory = os.path.dirname(os.path.abspath(self.path))  # noqa: ASYNC240
        os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseLockedError(
                f"database {self.path!r} is in use by another mainspring engine process"
            ) from None
        self._lock_fd = fd
        # Each WAL commit in one write where the coalescing VFS is built (wal_writes.py);
        # readers see the same file either way.
        self.wal_vfs = wal_writes.coalescing_vfs()
        target = self.path if self.wal_vfs is None else wal_writes.uri(self.path, self.wal_vfs)
        write = sqlite3.connect(
            target, uri=self.wal_vfs is not None, isolation_level=None, check_same_thread=False
        )
        # Takes effect only on a new file (an existing database keeps its page size).
        write.execute(f"PRAGMA page_size={PAGE_SIZE}")
        write.execute("PRAGMA journal_mode=WAL")
        write.execute(f"PRAGMA synchronous={self.durability.upper()}")
        (page_size,) = write.execute("PRAGMA page_size").fetchone()
        write.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
        write.execute("PRAGMA busy_timeout=5000")
        schema = resources.files("mainspring.engine.store").joinpath("sql/schema.sql").read_text()
        write.executescript(schema)
        _migrate(write)
        self._write = write
        self._pause_paths = {}
        for name, path in write.execute("SELECT DISTINCT event_name, match_path FROM pauses"):
            self._pause_paths.setdefault(name, set()).add(path)
        read = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        read.execute("PRAGMA query_only=1")
        self._read = read

    async def close(self) -> None:
        if self._queue:
            self._flush()
        for conn in (self._read, self._write):
            if conn is not None:
                conn.close()
        self._read = self._write = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writes ----------------------------------------------------------------------

    async def transact(self, unit: Callable[[SQLiteTx], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((unit, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        everything = batch
        db = self._write
        if db is None:
            closed = RuntimeError("the store is closed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(closed)
            return
        tx = SQLiteTx(db, self._pause_paths)
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                # Alone in its transaction, a failing unit needs no savepoint of its own.
                unit, future = batch[0]
                outcomes.append((future, unit(tx), None))
                db.execute("COMMIT")
                batch = []
            for unit, future in batch:
                db.execute("SAVEPOINT unit")
                try:
                    result = unit(tx)
                except Exception as exc:  # this unit alone is undone and told
                    db.execute("ROLLBACK TO unit")
                    db.execute("RELEASE unit")
                    outcomes.append((future, None, exc))
                else:
                    db.execute("RELEASE unit")
                    outcomes.append((future, result, None))
            if batch:
                db.execute("COMMIT")
        except Exception as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(future, None, exc) for _, future in everything]
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    # -- reads -----------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._read is None:
            raise RuntimeError("the store is not open")
        return self._read

    async def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    async def get_run(self, run_id: str) -> Run | None:
        row = (
            self._reader()
            .execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else read_run(row)

    async def runs_for_event(self, event_internal_id: str) -> list[Run]:
        # Its own runs, and the batches it joined (whose first event may be another). Two
        # index lookups, not one UNION: that would sort and de-duplicate in a temporary
        # b-tree, on the path of every send that looks up its run.
        reader = self._reader()
        own = reader.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE event_id = ?", (event_internal_id,)
        ).fetchall()
        joined = reader.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN "
            "(SELECT run_id FROM run_events WHERE event_id = ?)",
            (event_internal_id,),
        ).fetchall()
        if joined:
            own = list({row[0]: row for row in [*own, *joined]}.values())
        return [read_run(row) for row in sorted(own, key=lambda row: row[0])]

    async def runs_for_events(self, event_internal_ids: Sequence[str]) -> dict[str, list[Run]]:
        ids, marks = tuple(event_internal_ids), _marks(event_internal_ids)
        rows = self._reader().execute(
            f"SELECT found.event, {RUN_COLUMNS} FROM ("
            f"SELECT event_id AS event, run_id AS run FROM runs WHERE event_id IN ({marks}) "
            f"UNION SELECT event_id, run_id FROM run_events WHERE event_id IN ({marks})"
            ") AS found JOIN runs ON runs.run_id = found.run ORDER BY runs.run_id",
            ids + ids,
        )
        found: dict[str, list[Run]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(read_run(row[1:]))
        return found

    async def rerun_origins(self, run_ids: Sequence[str]) -> dict[str, RerunOrigin]:
        ids = tuple(run_ids)
        rows = self._reader().execute(
            "SELECT run_id, original_id, from_step, copied, created_at FROM reruns "
            f"WHERE run_id IN ({_marks(ids)})",
            ids,
        )
        return {row[0]: RerunOrigin(*row) for row in rows}

    async def triggering_events(self, run_ids: Sequence[str]) -> dict[str, bytes]:
        ids = tuple(run_ids)
        rows = self._reader().execute(
            f"SELECT run_id, events FROM runs WHERE run_id IN ({_marks(ids)})", ids
        )
        # A batch's events column is TEXT once an event was appended (``||`` makes text).
        return {row[0]: blob(row[1]) for row in rows}

    async def filed_events(self, keys: Sequence[str]) -> dict[str, StoredEvent]:
        ids = tuple(keys)
        rows = self._reader().execute(
            "SELECT run_events.dedupe_key, events.internal_id, events.id, events.name, "
            "events.data, events.ts, events.received_at FROM run_events JOIN events "
            "ON events.internal_id = run_events.event_id "
            f"WHERE run_events.dedupe_key IN ({_marks(ids)})",
            ids,
        )
        return {row[0]: read_event(row[1:]) for row in rows}

    async def holds_for_run(self, run_id: str) -> list[Hold]:
        rows = self._reader().execute(
            "SELECT kind, key, run_id, since, size FROM flow_holds WHERE run_id = ?", (run_id,)
        )
        return [Hold(HoldKind(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def held_runs(self) -> list[HeldRun]:
        rows = self._reader().execute(f"SELECT {HELD_COLUMNS} FROM held_runs ORDER BY run_id")
        return [HeldRun(*row) for row in rows]

    async def started_runs(self, function_ids: Sequence[str]) -> list[tuple[str, str, bytes]]:
        if not function_ids:
            return []
        marks = ", ".join("?" * len(function_ids))
        rows = self._reader().execute(
            f"SELECT run_id, function_id, events FROM runs WHERE function_id IN ({marks}) "
            f"AND started_at IS NOT NULL AND status NOT IN {FINISHED_SQL}",
            tuple(function_ids),
        )
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    async def load_run_state(self, run_id: str) -> RunState | None:
        db = self._reader()
        row = db.execute(
            f"SELECT {RUN_COLUMNS}, events, max_attempts, request_version, force_step_plan, "
            "coalesce_key, admitted_at FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        steps = [
            StepRecord(step_id, memo, op, version)
            for step_id, memo, op, version in db.execute(
                "SELECT step_id, memo, op, app_version FROM steps WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
        ]
        pending = {
            r[0] for r in db.execute("SELECT step_id FROM pending WHERE run_id = ?", (run_id,))
        }
        return RunState(
            run=run_from_row(row),
            events_json=row[10],
            max_attempts=row[11],
            request_version=row[12],
            force_step_plan=bool(row[13]),
            coalesce_key=row[14],
            steps=steps,
            pending=pending,
            admitted_at=row[15],
        )

    async def load_jobs(self) -> list[Job]:
        return self._jobs("", ())

    async def load_apps(self) -> list[bytes]:
        rows = self._reader().execute("SELECT body FROM apps ORDER BY name").fetchall()
        return [bytes(row[0]) for row in rows]

    async def jobs_for_run(self, run_id: str) -> list[Job]:
        return self._jobs("WHERE run_id = ?", (run_id,))

    async def jobs_for_runs(self, run_ids: Sequence[str]) -> dict[str, list[Job]]:
        found: dict[str, list[Job]] = {}
        for job in self._jobs(f"WHERE run_id IN ({_marks(run_ids)})", tuple(run_ids)):
            found.setdefault(job.run_id, []).append(job)
        return found

    def _jobs(self, where: str, args: tuple[str, ...]) -> list[Job]:
        rows = (
            self._reader()
            .execute(
                "SELECT job_id, run_id, kind, step_id, run_at, attempt, priority, data FROM jobs "
                f"{where} ORDER BY run_at",
                args,
            )
            .fetchall()
        )
        return [job_from_row(r) for r in rows]

    async def find_runs(
        self,
        *,
        function_id: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        unfinished: bool = False,
        statuses: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        function_ids: Sequence[str] | None = None,
    ) -> list[Run]:
        sql, args = run_query(
            SQLITE,
            function_id=function_id,
            created_after=created_after,
            created_before=created_before,
            unfinished=unfinished,
            statuses=statuses,
            cursor=cursor,
            limit=limit,
            newest_first=newest_first,
            function_ids=function_ids,
        )
        return [read_run(row) for row in self._reader().execute(sql, args).fetchall()]

    async def history(self, run_id: str) -> list[StepAttempt]:
        return (await self.histories([run_id]))[run_id]

    async def histories(self, run_ids: Sequence[str]) -> dict[str, list[StepAttempt]]:
        db, ids, marks = self._reader(), tuple(run_ids), _marks(run_ids)
        return histories(
            ids,
            db.execute(f"SELECT {STEP_HISTORY_COLUMNS} FROM steps WHERE run_id IN ({marks})", ids),
            db.execute(
                f"SELECT {ATTEMPT_HISTORY_COLUMNS} FROM attempts WHERE run_id IN ({marks})", ids
            ),
        )

    async def list_events(
        self, *, name: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[StoredEvent]:
        where: list[str] = []
        args: list[str | int] = []
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if before is not None:
            where.append("internal_id < ?")
            args.append(before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT internal_id, id, name, data, ts, received_at FROM events{clause}"
        sql += " ORDER BY internal_id DESC LIMIT ?"
        args.append(limit)
        return [read_event(row) for row in self._reader().execute(sql, args)]

    async def get_event(self, internal_id: str) -> StoredEvent | None:
        row = (
            self._reader()
            .execute(
                "SELECT internal_id, id, name, data, ts, received_at FROM events "
                "WHERE internal_id = ?",
                (internal_id,),
            )
            .fetchone()
        )
        return None if row is None else read_event(row)
