"""Row decoders and column lists shared by the store backends (SQLite and PostgreSQL):
both keep the same tables, columns and encodings, so a row reads the same from either."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from mainspring.engine.records import (
    FINISHED_STATUSES,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    StepAttempt,
    StoredEvent,
)
from mainspring.engine.store.contract import NewRun
from mainspring.protocol.messages import memo_value

RUN_COLUMNS = (
    "run_id, function_id, event_id, status, output, error, created_at, started_at, ended_at, "
    "app_version"
)
#: SQL list of the finished statuses, for ``status NOT IN (...)``.
FINISHED_SQL = "(" + ", ".join(f"'{status}'" for status in FINISHED_STATUSES) + ")"
#: The run columns ``Tx.update_run`` may set.
UPDATABLE_RUN_FIELDS = frozenset(
    {
        "status",
        "request_version",
        "force_step_plan",
        "started_at",
        "coalesce_key",
        "admitted_at",
        "app_version",
    }
)


def run_from_row(row: Sequence[Any]) -> Run:
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
        app_version=row[9],
    )


HELD_COLUMNS = "run_id, function_id, app, since, until"
#: Kinds of the jobs that call a function (those a held run keeps waiting).
CALL_KINDS = ("start", "discover", "plan")
CALL_KINDS_SQL = "(" + ", ".join(f"'{kind}'" for kind in CALL_KINDS) + ")"


def new_run_values(run: NewRun) -> tuple[Any, ...]:
    """A new run's row, in the column order both backends insert it in."""
    return (
        run.run_id,
        run.function_id,
        run.event_id,
        run.events_json,
        run.idempotency_key,
        RunStatus.QUEUED.value,
        run.max_attempts,
        run.created_at,
        run.created_at if run.admitted else None,
    )


def job_values(job: Job) -> tuple[Any, ...]:
    """A job's row: job_id, run_id, kind, step_id, run_at, attempt, priority, data and
    created_at (when it was queued: its first due time)."""
    data = None if job.data is None else orjson.dumps(job.data)
    return (
        job.id,
        job.run_id,
        job.kind.value,
        job.step_id,
        job.run_at,
        job.attempt,
        job.priority,
        data,
        job.run_at,
    )


def job_from_row(row: Sequence[Any]) -> Job:
    """A job from ``job_id, run_id, kind, step_id, run_at, attempt, priority, data``."""
    return Job(
        id=row[0],
        run_id=row[1],
        kind=JobKind(row[2]),
        step_id=row[3],
        run_at=row[4],
        attempt=row[5],
        priority=row[6],
        data=None if row[7] is None else orjson.loads(row[7]),
    )


PAUSE_COLUMNS = (
    "pause_id, run_id, step_id, kind, event_name, expression, match_path, match_value, "
    "expires_at, data, created_at"
)


def pause_from_row(row: Sequence[Any]) -> Pause:
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


def loads(raw: bytes | str) -> Any:
    """A stored JSON value; one the decoder refuses (nested deeper than it goes, kept by an
    older version) reads as a note saying so, so that listing it does not fail."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {"_degraded": f"the stored JSON value could not be decoded: {exc}"}


def read_run(row: Sequence[Any]) -> Run:
    """:func:`run_from_row` for listings: an undecodable output or error is degraded, not
    raised."""
    try:
        return run_from_row(row)
    except orjson.JSONDecodeError:
        output = None if row[4] is None else loads(row[4])
        error = None if row[5] is None else loads(row[5])
        return dataclasses.replace(
            run_from_row([*row[:4], None, None, *row[6:]]), output=output, error=error
        )


def blob(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def read_event(row: Sequence[Any]) -> StoredEvent:
    """An event read back, its data's stored JSON kept (``wire_json`` reuses it as is)."""
    raw = row[3] if isinstance(row[3], bytes) else str(row[3]).encode()
    return StoredEvent(row[0], row[1], row[2], loads(raw), row[4], row[5], raw)


#: Columns of ``steps`` and ``attempts`` that :func:`histories` reads, in its order.
STEP_HISTORY_COLUMNS = (
    "run_id, step_id, memo, user_id, op, attempt, started_at, ended_at, seq, app_version, "
    "copied_from"
)
ATTEMPT_HISTORY_COLUMNS = (
    "run_id, step_id, user_id, op, attempt, started_at, ended_at, error, after_seq"
)


def histories(
    run_ids: Sequence[str],
    step_rows: Iterable[Sequence[Any]],
    attempt_rows: Iterable[Sequence[Any]],
) -> dict[str, list[StepAttempt]]:
    """Each run's history from its ``steps`` and ``attempts`` rows (the columns above),
    ordered as recorded: a step by its position in the stack, a failed attempt just before
    the step that was recorded next."""
    found: dict[str, list[tuple[int, int, StepAttempt]]] = {run_id: [] for run_id in run_ids}
    for row in step_rows:
        run_id, step_id, memo, user_id, op, attempt, started, ended, seq, version, copied = row
        kind, value = memo_value(loads(memo) if memo is not None else None)
        failed = kind == "error"
        entry = StepAttempt(
            step_id,
            user_id,
            op,
            attempt,
            started,
            ended,
            None if failed else value,
            value if failed else None,
            version,
            copied,
        )
        found[run_id].append((seq, 1, entry))
    for run_id, step_id, user_id, op, attempt, started, ended, error, after in attempt_rows:
        failure = loads(error) if error is not None else None
        entry = StepAttempt(step_id, user_id, op, attempt, started, ended, None, failure)
        found[run_id].append((after + 1, 0, entry))
    for entries in found.values():
        entries.sort(key=lambda e: (e[0], e[1], e[2].ended_at))
    return {run_id: [entry for _, _, entry in entries] for run_id, entries in found.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class Dialect:
    """How a backend writes a parameter and a list parameter in SQL."""

    param: str
    #: ``column`` matching any of ``values``: the SQL and its arguments.
    any_of: Callable[[str, Sequence[Any]], tuple[str, list[Any]]]


def run_query(
    dialect: Dialect,
    *,
    function_id: str | None,
    created_after: int | None,
    created_before: int | None,
    unfinished: bool,
    statuses: Sequence[str] | None,
    cursor: str | None,
    limit: int | None,
    newest_first: bool,
    function_ids: Sequence[str] | None,
) -> tuple[str, list[Any]]:
    """The query of ``Store.find_runs`` and its arguments."""
    mark = dialect.param
    where: list[str] = []
    args: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        where.append(sql)
        args.extend(values)

    if function_id is not None:
        add(f"function_id = {mark}", function_id)
    if function_ids is not None:
        add(*_any(dialect, "function_id", function_ids))
    if created_after is not None:
        add(f"created_at >= {mark}", created_after)
    if created_before is not None:
        add(f"created_at < {mark}", created_before)
    if unfinished:
        add(f"status NOT IN {FINISHED_SQL}")
    if statuses is not None:
        add(*_any(dialect, "status", statuses))
    if cursor is not None:
        # Run ids are ULIDs: ordering by id is ordering by creation, so a page's last id is
        # a stable cursor even while new runs arrive.
        add(f"run_id < {mark}" if newest_first else f"run_id > {mark}", cursor)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    order = "DESC" if newest_first else "ASC"
    sql = f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY run_id {order}"
    if limit is not None:
        sql += f" LIMIT {mark}"
        args.append(limit)
    return sql, args


def _any(dialect: Dialect, column: str, values: Sequence[Any]) -> tuple[str, ...]:
    sql, args = dialect.any_of(column, values)
    return (sql, *args)
