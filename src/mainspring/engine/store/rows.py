"""Row decoders and column lists shared by the store backends (SQLite and PostgreSQL):
both keep the same tables, columns and encodings, so a row reads the same from either."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
    StoredEvent,
)

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
