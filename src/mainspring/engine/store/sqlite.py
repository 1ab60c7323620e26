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
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Literal, TypeVar

import orjson

from mainspring.engine.records import (
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    StepAttempt,
    StoredEvent,
)
from mainspring.engine.store.contract import NewRun, RunState, StepRecord
from mainspring.protocol.match_keys import value_key
from mainspring.protocol.messages import memo_value

T = TypeVar("T")
Durability = Literal["full", "normal"]

_RUN_COLUMNS = (
    "run_id, function_id, event_id, status, output, error, created_at, started_at, ended_at"
)
_UPDATABLE = frozenset(
    {"status", "request_version", "force_step_plan", "started_at", "coalesce_key"}
)


class DatabaseLockedError(RuntimeError):
    """Another engine process holds this database."""


def _run_from_row(row: Sequence[Any]) -> Run:
    output = orjson.loads(row[4]) if row[4] is not None else None
    error = orjson.loads(row[5]) if row[5] is not None else None
    return Run(
        id=row[0],
        function_id=row[1],
        event_id=row[2],
        status=RunStatus(row[3]),
        output=output,
        error=error,
        created_at=row[6],
        started_at=row[7],
        ended_at=row[8],
    )


_PAUSE_COLUMNS = (
    "pause_id, run_id, step_id, kind, event_name, expression, match_path, match_value, "
    "expires_at, data, created_at"
)


def _pause_from_row(row: Sequence[Any]) -> Pause:
    return Pause(
        id=row[0],
        run_id=row[1],
        step_id=row[2],
        kind=PauseKind(row[3]),
        event_name=row[4],
        expression=row[5],
        match_path=row[6],
        match_value=row[7],
        expires_at=row[8],
        data=orjson.loads(row[9]) if row[9] is not None else {},
        created_at=row[10],
    )


class SQLiteTx:
    """The :class:`~mainspring.engine.store.contract.Tx` of one SQLite transaction."""

    __slots__ = ("_db", "_paths")

    def __init__(self, db: sqlite3.Connection, paths: dict[str, set[str | None]]) -> None:
        self._db = db
        #: Match paths in use per event name (shared with the store; grows only).
        self._paths = paths

    def insert_event(self, event: StoredEvent) -> bool:
        cur = self._db.execute(
            "INSERT INTO events (internal_id, id, name, data, ts, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                event.internal_id,
                event.id,
                event.name,
                event.data_json if event.data_json is not None else orjson.dumps(event.data),
                event.ts,
                event.received_at,
            ),
        )
        return cur.rowcount == 1

    def create_run(self, run: NewRun) -> bool:
        cur = self._db.execute(
            "INSERT INTO runs (run_id, function_id, event_id, events, idempotency_key, status, "
            "max_attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                run.run_id,
                run.function_id,
                run.event_id,
                run.events_json,
                run.idempotency_key,
                RunStatus.SCHEDULED.value,
                run.max_attempts,
                run.created_at,
            ),
        )
        return cur.rowcount == 1

    def save_step(
        self,
        run_id: str,
        step_id: str,
        memo: bytes,
        *,
        seq: int,
        user_id: str,
        op: str,
        at: int,
        grouped: bool = True,
        attempt: int = 0,
        started_at: int | None = None,
    ) -> tuple[bool, bool]:
        db = self._db
        cur = db.execute(
            "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
            "ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, step_id, seq, memo, user_id, op, attempt, started_at, at),
        )
        if cur.rowcount != 1:
            return False, grouped and self._has_pending(run_id)
        if not grouped:
            return True, False
        db.execute("DELETE FROM pending WHERE run_id = ? AND step_id = ?", (run_id, step_id))
        return True, self._has_pending(run_id)

    def record_attempt(
        self,
        run_id: str,
        step_id: str,
        *,
        attempt: int,
        user_id: str,
        op: str,
        started_at: int | None,
        ended_at: int,
        error: bytes,
    ) -> None:
        self._db.execute(
            "INSERT INTO attempts (run_id, step_id, attempt, user_id, op, started_at, ended_at, "
            "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, step_id, attempt, user_id, op, started_at, ended_at, error),
        )

    def _has_pending(self, run_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM pending WHERE run_id = ? LIMIT 1", (run_id,)
        ).fetchone()
        return row is not None

    def set_pending(self, run_id: str, step_ids: Sequence[str], coalesce_key: str | None) -> None:
        db = self._db
        db.execute("DELETE FROM pending WHERE run_id = ?", (run_id,))
        # Members already recorded (a race with their own save) are not pending.
        db.executemany(
            "INSERT INTO pending (run_id, step_id) SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM steps WHERE run_id = ? AND step_id = ?) ON CONFLICT DO NOTHING",
            [(run_id, step_id, run_id, step_id) for step_id in step_ids],
        )
        db.execute("UPDATE runs SET coalesce_key = ? WHERE run_id = ?", (coalesce_key, run_id))

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"update_run: unknown fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE runs SET {assignments} WHERE run_id = ?", (*fields.values(), run_id)
        )

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: bytes | None,
        error: bytes | None,
        at: int,
        grouped: bool = True,
    ) -> bool:
        cur = self._db.execute(
            "UPDATE runs SET status = ?, output = ?, error = ?, ended_at = ? "
            "WHERE run_id = ? AND status NOT IN ('Completed', 'Failed', 'Cancelled')",
            (status.value, output, error, at, run_id),
        )
        if cur.rowcount != 1:
            return False
        self._db.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,))
        self._db.execute("DELETE FROM pauses WHERE run_id = ?", (run_id,))
        if grouped:
            self._db.execute("DELETE FROM pending WHERE run_id = ?", (run_id,))
        return True

    def enqueue(self, job: Job) -> bool:
        cur = self._db.execute(
            "INSERT INTO jobs (job_id, run_id, kind, step_id, run_at, attempt, priority, data, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                job.id,
                job.run_id,
                job.kind.value,
                job.step_id,
                job.run_at,
                job.attempt,
                job.priority,
                None if job.data is None else orjson.dumps(job.data),
                job.run_at,
            ),
        )
        return cur.rowcount == 1

    def delete_job(self, job_id: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def reschedule_job(self, job_id: str, *, run_at: int, attempt: int) -> None:
        self._db.execute(
            "UPDATE jobs SET run_at = ?, attempt = ? WHERE job_id = ?", (run_at, attempt, job_id)
        )

    def create_pause(self, pause: Pause) -> bool:
        cur = self._db.execute(
            f"INSERT INTO pauses ({_PAUSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (
                pause.id,
                pause.run_id,
                pause.step_id,
                pause.kind.value,
                pause.event_name,
                pause.expression,
                pause.match_path,
                pause.match_value,
                pause.expires_at,
                orjson.dumps(pause.data),
                pause.created_at,
            ),
        )
        if cur.rowcount != 1:
            return False
        self._paths.setdefault(pause.event_name, set()).add(pause.match_path)
        return True

    def claim_pause(self, pause_id: str) -> Pause | None:
        row = self._db.execute(
            f"DELETE FROM pauses WHERE pause_id = ? RETURNING {_PAUSE_COLUMNS}", (pause_id,)
        ).fetchone()
        return None if row is None else _pause_from_row(row)

    def pauses_for_event(self, name: str, event: Mapping[str, Any], now: int) -> list[Pause]:
        db = self._db
        found: list[Pause] = []
        # Paths ever used for this name (a stale one costs one empty lookup), kept in
        # memory: scanning the index for them would cost O(pauses) per event.
        paths = self._paths.get(name)
        if not paths:
            return found
        for path in paths:
            if path is None:
                continue
            key = value_key(event, path)
            if key is None:
                continue
            found.extend(
                _pause_from_row(r)
                for r in db.execute(
                    f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE event_name = ? "
                    "AND match_path = ? AND match_value = ? AND expires_at > ?",
                    (name, path, key, now),
                )
            )
        if None in paths:
            found.extend(
                _pause_from_row(r)
                for r in db.execute(
                    f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE event_name = ? "
                    "AND match_path IS NULL AND expires_at > ?",
                    (name, now),
                )
            )
        found.sort(key=lambda p: (p.created_at, p.id))
        return found

    def job_exists(self, job_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return row is not None

    def repurpose_job(self, job_id: str, job: Job) -> None:
        self._db.execute(
            "UPDATE jobs SET kind = ?, step_id = ?, run_at = ?, attempt = ?, data = ? "
            "WHERE job_id = ?",
            (
                job.kind.value,
                job.step_id,
                job.run_at,
                job.attempt,
                None if job.data is None else orjson.dumps(job.data),
                job_id,
            ),
        )


class SQLiteStore:
    """A :class:`~mainspring.engine.store.contract.Store` on one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, durability: Durability = "full") -> None:
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = os.fspath(path)
        self.durability: Durability = durability
        self._write: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: list[tuple[Callable[[SQLiteTx], Any], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._pause_paths: dict[str, set[str | None]] = {}

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
        write = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        write.execute("PRAGMA journal_mode=WAL")
        write.execute(f"PRAGMA synchronous={self.durability.upper()}")
        write.execute("PRAGMA busy_timeout=5000")
        schema = resources.files("mainspring.engine.store").joinpath("sql/schema.sql").read_text()
        write.executescript(schema)
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

    async def get_run(self, run_id: str) -> Run | None:
        row = (
            self._reader()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else _run_from_row(row)

    async def runs_for_event(self, event_internal_id: str) -> list[Run]:
        rows = (
            self._reader()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE event_id = ? ORDER BY run_id",
                (event_internal_id,),
            )
            .fetchall()
        )
        return [_run_from_row(row) for row in rows]

    async def load_run_state(self, run_id: str) -> RunState | None:
        db = self._reader()
        row = db.execute(
            f"SELECT {_RUN_COLUMNS}, events, max_attempts, request_version, force_step_plan, "
            "coalesce_key FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        steps = [
            StepRecord(step_id, memo)
            for step_id, memo in db.execute(
                "SELECT step_id, memo FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
        pending = {
            r[0] for r in db.execute("SELECT step_id FROM pending WHERE run_id = ?", (run_id,))
        }
        return RunState(
            run=_run_from_row(row),
            events_json=row[9],
            max_attempts=row[10],
            request_version=row[11],
            force_step_plan=bool(row[12]),
            coalesce_key=row[13],
            steps=steps,
            pending=pending,
        )

    async def load_jobs(self) -> list[Job]:
        rows = (
            self._reader()
            .execute(
                "SELECT job_id, run_id, kind, step_id, run_at, attempt, priority, data FROM jobs "
                "ORDER BY run_at"
            )
            .fetchall()
        )
        return [
            Job(
                id=r[0],
                run_id=r[1],
                kind=JobKind(r[2]),
                step_id=r[3],
                run_at=r[4],
                attempt=r[5],
                priority=r[6],
                data=None if r[7] is None else orjson.loads(r[7]),
            )
            for r in rows
        ]

    async def find_runs(
        self,
        *,
        function_id: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        unfinished: bool = False,
    ) -> list[Run]:
        where: list[str] = []
        args: list[str | int] = []
        if function_id is not None:
            where.append("function_id = ?")
            args.append(function_id)
        if created_after is not None:
            where.append("created_at >= ?")
            args.append(created_after)
        if created_before is not None:
            where.append("created_at < ?")
            args.append(created_before)
        if unfinished:
            where.append("status NOT IN ('Completed', 'Failed', 'Cancelled')")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = (
            self._reader()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY run_id", args)
            .fetchall()
        )
        return [_run_from_row(row) for row in rows]

    async def history(self, run_id: str) -> list[StepAttempt]:
        db = self._reader()
        rows: list[tuple[int, int, StepAttempt]] = []
        for step_id, memo, user_id, op, attempt, started, ended, seq in db.execute(
            "SELECT step_id, memo, user_id, op, attempt, started_at, ended_at, seq FROM steps "
            "WHERE run_id = ?",
            (run_id,),
        ):
            kind, value = memo_value(orjson.loads(memo) if memo is not None else None)
            rows.append(
                (
                    ended,
                    seq,
                    StepAttempt(
                        step_id=step_id,
                        user_id=user_id,
                        op=op,
                        attempt=attempt,
                        started_at=started,
                        ended_at=ended,
                        output=None if kind == "error" else value,
                        error=value if kind == "error" else None,
                    ),
                )
            )
        for step_id, user_id, op, attempt, started, ended, error in db.execute(
            "SELECT step_id, user_id, op, attempt, started_at, ended_at, error FROM attempts "
            "WHERE run_id = ?",
            (run_id,),
        ):
            rows.append(
                (
                    ended,
                    -1,
                    StepAttempt(
                        step_id=step_id,
                        user_id=user_id,
                        op=op,
                        attempt=attempt,
                        started_at=started,
                        ended_at=ended,
                        output=None,
                        error=orjson.loads(error) if error is not None else None,
                    ),
                )
            )
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in rows]

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
        if row is None:
            return None
        return StoredEvent(row[0], row[1], row[2], orjson.loads(row[3]), row[4], row[5])
