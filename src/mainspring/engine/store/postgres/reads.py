"""Reads of the PostgreSQL backend: the store contract's queries, on a pool of asynchronous
connections (autocommit: each query sees what has committed when it runs).

The queries mirror ``sqlite.py``'s; lists travel as one array parameter (``= ANY(%s)``),
so a read of many items is one query whatever their number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

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
from mainspring.engine.store.contract import RunState, StepRecord
from mainspring.engine.store.rows import (
    ATTEMPT_HISTORY_COLUMNS,
    FINISHED_SQL,
    HELD_COLUMNS,
    RUN_COLUMNS,
    STEP_HISTORY_COLUMNS,
    Dialect,
    histories,
    job_from_row,
    read_event,
    read_run,
    run_from_row,
    run_query,
)

T = TypeVar("T")

#: Tries of a read whose connection broke (each pooled connection may have been cut).
READ_ATTEMPTS = 5
#: Seconds ``ping`` waits for the database.
PING_TIMEOUT = 3.0
_JOB_COLUMNS = "job_id, run_id, kind, step_id, run_at, attempt, priority, data"
#: PostgreSQL takes a list as one array parameter.
POSTGRES = Dialect("%s", lambda column, values: (f"{column} = ANY(%s)", [list(values)]))
_EVENT_COLUMNS = "internal_id, id, name, data, ts, received_at"


async def _asked_again(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, asked again when its connection broke: a pooled connection cut by a
    restart of the database fails its next query, and the pool then drops it."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return await read()
        except psycopg.OperationalError:
            continue
    return await read()


class PostgresReads:
    """The read side of :class:`~mainspring.engine.store.postgres.store.PostgresStore`."""

    def __init__(self) -> None:
        self._pool: AsyncConnectionPool[Any] | None = None

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def query() -> list[tuple[Any, ...]]:
            async with self._connection() as conn:
                cur = await conn.execute(sql, args)
                rows: list[tuple[Any, ...]] = await cur.fetchall()
                return rows

        return await _asked_again(query)

    def _connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool.connection()

    async def _row(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def ping(self) -> None:
        # Bounded: a server that no longer answers must not hang the health check.
        await asyncio.wait_for(self._rows("SELECT 1"), PING_TIMEOUT)

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._row(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
        return None if row is None else read_run(row)

    async def runs_for_event(self, event_internal_id: str) -> list[Run]:
        return (await self.runs_for_events([event_internal_id])).get(event_internal_id, [])

    async def runs_for_events(self, event_internal_ids: Sequence[str]) -> dict[str, list[Run]]:
        # Its own runs, and the batches it joined (whose first event may be another).
        ids = list(event_internal_ids)
        rows = await self._rows(
            f"SELECT found.event, {RUN_COLUMNS} FROM ("
            "SELECT event_id AS event, run_id AS run FROM runs WHERE event_id = ANY(%s) "
            "UNION SELECT event_id, run_id FROM run_events WHERE event_id = ANY(%s)"
            ") AS found JOIN runs ON runs.run_id = found.run ORDER BY runs.run_id",
            (ids, ids),
        )
        found: dict[str, list[Run]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(read_run(row[1:]))
        return found

    async def rerun_origins(self, run_ids: Sequence[str]) -> dict[str, RerunOrigin]:
        rows = await self._rows(
            "SELECT run_id, original_id, from_step, copied, created_at FROM reruns "
            "WHERE run_id = ANY(%s)",
            (list(run_ids),),
        )
        return {row[0]: RerunOrigin(*row) for row in rows}

    async def triggering_events(self, run_ids: Sequence[str]) -> dict[str, bytes]:
        rows = await self._rows(
            "SELECT run_id, events FROM runs WHERE run_id = ANY(%s)", (list(run_ids),)
        )
        return {row[0]: bytes(row[1]) for row in rows}

    async def filed_events(self, keys: Sequence[str]) -> dict[str, StoredEvent]:
        rows = await self._rows(
            "SELECT run_events.dedupe_key, events.internal_id, events.id, events.name, "
            "events.data, events.ts, events.received_at FROM run_events JOIN events "
            "ON events.internal_id = run_events.event_id WHERE run_events.dedupe_key = ANY(%s)",
            (list(keys),),
        )
        return {row[0]: read_event(row[1:]) for row in rows}

    async def holds_for_run(self, run_id: str) -> list[Hold]:
        rows = await self._rows(
            "SELECT kind, key, run_id, since, size FROM flow_holds WHERE run_id = %s", (run_id,)
        )
        return [Hold(HoldKind(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def held_runs(self) -> list[HeldRun]:
        rows = await self._rows(f"SELECT {HELD_COLUMNS} FROM held_runs ORDER BY run_id")
        return [HeldRun(*row) for row in rows]

    async def started_runs(self, function_ids: Sequence[str]) -> list[tuple[str, str, bytes]]:
        if not function_ids:
            return []
        rows = await self._rows(
            "SELECT run_id, function_id, events FROM runs WHERE function_id = ANY(%s) "
            f"AND started_at IS NOT NULL AND status NOT IN {FINISHED_SQL}",
            (list(function_ids),),
        )
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    async def load_run_state(self, run_id: str) -> RunState | None:
        return await _asked_again(lambda: self._load_run_state(run_id))

    async def _load_run_state(self, run_id: str) -> RunState | None:
        # One snapshot for the run, its steps and its pending set: another process may
        # record a step between two separate reads.
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await conn.execute(
                f"SELECT {RUN_COLUMNS}, events, max_attempts, request_version, "
                "force_step_plan, coalesce_key, admitted_at FROM runs WHERE run_id = %s",
                (run_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(
                "SELECT step_id, memo, op, app_version FROM steps WHERE run_id = %s "
                "ORDER BY seq, ended_at, step_id",
                (run_id,),
            )
            steps = [StepRecord(*step) for step in await cur.fetchall()]
            cur = await conn.execute("SELECT step_id FROM pending WHERE run_id = %s", (run_id,))
            pending = {r[0] for r in await cur.fetchall()}
        return RunState(
            run=run_from_row(row),
            events_json=bytes(row[10]),
            max_attempts=row[11],
            request_version=row[12],
            force_step_plan=bool(row[13]),
            coalesce_key=row[14],
            steps=steps,
            pending=pending,
            admitted_at=row[15],
        )

    async def load_jobs(self) -> list[Job]:
        return await self._jobs("", ())

    async def load_apps(self) -> list[bytes]:
        rows = await self._rows("SELECT body FROM apps ORDER BY name")
        return [bytes(row[0]) for row in rows]

    async def jobs_for_run(self, run_id: str) -> list[Job]:
        return await self._jobs("WHERE run_id = %s", (run_id,))

    async def jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]:
        return await self._jobs("WHERE job_id = ANY(%s)", (list(job_ids),))

    async def jobs_for_runs(self, run_ids: Sequence[str]) -> dict[str, list[Job]]:
        found: dict[str, list[Job]] = {}
        for job in await self._jobs("WHERE run_id = ANY(%s)", (list(run_ids),)):
            found.setdefault(job.run_id, []).append(job)
        return found

    async def _jobs(self, where: str, args: Sequence[Any]) -> list[Job]:
        rows = await self._rows(f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY run_at", args)
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
            POSTGRES,
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
        return [read_run(row) for row in await self._rows(sql, args)]

    async def history(self, run_id: str) -> list[StepAttempt]:
        return (await self.histories([run_id]))[run_id]

    async def histories(self, run_ids: Sequence[str]) -> dict[str, list[StepAttempt]]:
        ids = list(run_ids)
        return histories(
            ids,
            await self._rows(
                f"SELECT {STEP_HISTORY_COLUMNS} FROM steps WHERE run_id = ANY(%s)", (ids,)
            ),
            await self._rows(
                f"SELECT {ATTEMPT_HISTORY_COLUMNS} FROM attempts WHERE run_id = ANY(%s)", (ids,)
            ),
        )

    async def list_events(
        self, *, name: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[StoredEvent]:
        where: list[str] = []
        args: list[Any] = []
        if name is not None:
            where.append("name = %s")
            args.append(name)
        if before is not None:
            where.append("internal_id < %s")
            args.append(before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events{clause} ORDER BY internal_id DESC LIMIT %s"
        args.append(limit)
        return [read_event(row) for row in await self._rows(sql, args)]

    async def get_event(self, internal_id: str) -> StoredEvent | None:
        row = await self._row(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE internal_id = %s", (internal_id,)
        )
        return None if row is None else read_event(row)
