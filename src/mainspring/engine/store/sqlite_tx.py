"""Writes of the SQLite backend: the :class:`~mainspring.engine.store.contract.Tx` of one
transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mainspring.engine.records import (
    HeldRun,
    Hold,
    HoldKind,
    Job,
    Pause,
    RerunOrigin,
    RunStatus,
    StoredEvent,
)
from mainspring.engine.store.contract import NewRun, StepGroup, StepRow
from mainspring.engine.store.rows import (
    CALL_KINDS_SQL,
    FINISHED_SQL,
    HELD_COLUMNS,
    PAUSE_COLUMNS,
    UPDATABLE_RUN_FIELDS,
    job_from_row,
    job_values,
    new_run_values,
    pause_from_row,
)
from mainspring.protocol.match_keys import value_key
from mainspring.protocol.messages import memo_value

_INSERT_RUN = (
    "INSERT INTO runs (run_id, function_id, event_id, events, idempotency_key, status, "
    "max_attempts, created_at, admitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
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
        return self._db.execute(_INSERT_RUN, new_run_values(run)).rowcount == 1

    def start_run(self, run: NewRun, job: Job) -> bool:
        if not self.create_run(run):
            return False
        self.enqueue(job)
        return True

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
        app_version: str | None = None,
    ) -> tuple[bool, bool]:
        db = self._db
        cur = db.execute(
            "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
            "ended_at, app_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, step_id, seq, memo, user_id, op, attempt, started_at, at, app_version),
        )
        if cur.rowcount != 1:
            return False, grouped and self._has_pending(run_id)
        if not grouped:
            return True, False
        db.execute("DELETE FROM pending WHERE run_id = ? AND step_id = ?", (run_id, step_id))
        return True, self._has_pending(run_id)

    def save_steps(
        self, run_id: str, rows: Sequence[StepRow], *, attempt: int, app_version: str | None
    ) -> set[str]:
        return {
            row.step_id
            for row in rows
            if self.save_step(
                run_id,
                row.step_id,
                row.memo,
                seq=row.seq,
                user_id=row.user_id,
                op=row.op,
                at=row.ended_at,
                grouped=False,
                attempt=attempt,
                started_at=row.started_at,
                app_version=app_version,
            )[0]
        }

    def record_attempt(
        self,
        run_id: str,
        step_id: str,
        *,
        attempt: int,
        after_seq: int,
        user_id: str,
        op: str,
        started_at: int | None,
        ended_at: int,
        error: bytes,
    ) -> bool:
        cur = self._db.execute(
            "INSERT INTO attempts (run_id, step_id, attempt, after_seq, user_id, op, started_at, "
            "ended_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, step_id, attempt, after_seq, user_id, op, started_at, ended_at, error),
        )
        return cur.rowcount == 1

    def step_names(self, run_id: str, step_ids: Sequence[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for start in range(0, len(step_ids), 500):  # SQLite's bound-parameter limit
            chunk = step_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            names.update(
                self._db.execute(
                    f"SELECT step_id, user_id FROM steps WHERE run_id = ? AND step_id IN ({marks})",
                    (run_id, *chunk),
                ).fetchall()
            )
        return names

    def _has_pending(self, run_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM pending WHERE run_id = ? LIMIT 1", (run_id,)
        ).fetchone()
        return row is not None

    def drop_pending(self, run_id: str, step_id: str) -> bool:
        db = self._db
        db.execute("DELETE FROM pending WHERE run_id = ? AND step_id = ?", (run_id, step_id))
        return self._has_pending(run_id)

    def set_pending(
        self, run_id: str, step_ids: Sequence[str], coalesce_key: str | None, *, after_seq: int
    ) -> None:
        db = self._db
        db.execute("DELETE FROM pending WHERE run_id = ?", (run_id,))
        # Members already recorded (a race with their own save) are not pending.
        db.executemany(
            "INSERT INTO pending (run_id, step_id) SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM steps WHERE run_id = ? AND step_id = ?) ON CONFLICT DO NOTHING",
            [(run_id, step_id, run_id, step_id) for step_id in step_ids],
        )
        db.execute("UPDATE runs SET coalesce_key = ? WHERE run_id = ?", (coalesce_key, run_id))
        if coalesce_key is not None:
            # Kept for reruns: the batch a step was first planned in (a race-mode discovery
            # plans unfinished members again, with new steps; they stay in their first).
            # ``after_seq`` comes from the executor's copy of the run (its stack's length),
            # so planning a batch reads nothing more from the run's steps.
            db.executemany(
                "INSERT INTO step_groups (run_id, step_id, group_key, after_seq) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(run_id, step_id, coalesce_key, after_seq) for step_id in step_ids],
            )

    def record_group(
        self, run_id: str, step_ids: Sequence[str], group_key: str, *, after_seq: int
    ) -> None:
        self._db.executemany(
            "INSERT INTO step_groups (run_id, step_id, group_key, after_seq) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(run_id, step_id, group_key, after_seq) for step_id in step_ids],
        )

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - UPDATABLE_RUN_FIELDS
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
            f"WHERE run_id = ? AND status NOT IN {FINISHED_SQL}",
            (status.value, output, error, at, run_id),
        )
        if cur.rowcount != 1:
            return False
        self._db.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,))
        self._db.execute("DELETE FROM pauses WHERE run_id = ?", (run_id,))
        self._db.execute("DELETE FROM flow_holds WHERE run_id = ?", (run_id,))
        self._db.execute("DELETE FROM held_runs WHERE run_id = ?", (run_id,))
        if grouped:
            self._db.execute("DELETE FROM pending WHERE run_id = ?", (run_id,))
        return True

    def enqueue(self, job: Job) -> bool:
        cur = self._db.execute(
            "INSERT INTO jobs (job_id, run_id, kind, step_id, run_at, attempt, priority, data, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            job_values(job),
        )
        return cur.rowcount == 1

    def enqueue_all(self, jobs: Sequence[Job]) -> list[Job]:
        return [job for job in jobs if self.enqueue(job)]

    def save_app(self, name: str, body: bytes, *, at: int) -> None:
        self._db.execute(
            "INSERT INTO apps (name, body, synced_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET body = excluded.body, synced_at = excluded.synced_at",
            (name, body, at),
        )

    def delete_app(self, name: str) -> None:
        self._db.execute("DELETE FROM apps WHERE name = ?", (name,))

    def delete_job(self, job_id: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def reschedule_job(self, job_id: str, *, run_at: int, attempt: int) -> None:
        self._db.execute(
            "UPDATE jobs SET run_at = ?, attempt = ? WHERE job_id = ?", (run_at, attempt, job_id)
        )

    def create_pause(self, pause: Pause) -> bool:
        cur = self._db.execute(
            f"INSERT INTO pauses ({PAUSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
            f"DELETE FROM pauses WHERE pause_id = ? RETURNING {PAUSE_COLUMNS}", (pause_id,)
        ).fetchone()
        return None if row is None else pause_from_row(row)

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
                pause_from_row(r)
                for r in db.execute(
                    f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = ? "
                    "AND match_path = ? AND match_value = ? AND expires_at > ?",
                    (name, path, key, now),
                )
            )
        if None in paths:
            found.extend(
                pause_from_row(r)
                for r in db.execute(
                    f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = ? "
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

    # -- flow control ------------------------------------------------------------------

    def get_cell(self, key: str, now: int) -> tuple[int, str | None] | None:
        row = self._db.execute(
            "SELECT tat, run_id FROM flow_cells WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def put_cell(self, key: str, tat: int, run_id: str | None, expires_at: int) -> None:
        self._db.execute(
            "INSERT INTO flow_cells (key, tat, run_id, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, run_id = excluded.run_id, "
            "expires_at = excluded.expires_at",
            (key, tat, run_id, expires_at),
        )

    def purge_cells(self, now: int) -> int:
        return self._db.execute("DELETE FROM flow_cells WHERE expires_at <= ?", (now,)).rowcount

    def get_hold(self, kind: HoldKind, key: str) -> Hold | None:
        row = self._db.execute(
            "SELECT run_id, since, size FROM flow_holds WHERE kind = ? AND key = ?",
            (kind.value, key),
        ).fetchone()
        return None if row is None else Hold(kind, key, row[0], row[1], row[2])

    def put_hold(self, hold: Hold) -> None:
        self._db.execute(
            "INSERT INTO flow_holds (kind, key, run_id, since, size) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET run_id = excluded.run_id, "
            "since = excluded.since, size = excluded.size",
            (hold.kind.value, hold.key, hold.run_id, hold.since, hold.size),
        )

    def close_hold(self, kind: HoldKind, run_id: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM flow_holds WHERE run_id = ? AND kind = ?", (run_id, kind.value)
        )
        return cur.rowcount > 0

    def add_run_event(self, dedupe_key: str, event_id: str, run_id: str) -> bool:
        cur = self._db.execute(
            "INSERT INTO run_events (dedupe_key, event_id, run_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (dedupe_key, event_id, run_id),
        )
        return cur.rowcount == 1

    def append_run_event(self, run_id: str, event_json: bytes, hold_key: str) -> int:
        # The events column is a JSON array: splice the new event in before its "]".
        self._db.execute(
            "UPDATE runs SET events = substr(events, 1, length(events) - 1) || "
            "CAST(',' AS BLOB) || ? || CAST(']' AS BLOB) WHERE run_id = ?",
            (event_json, run_id),
        )
        row = self._db.execute(
            "UPDATE flow_holds SET size = size + 1 WHERE kind = ? AND key = ? AND run_id = ? "
            "RETURNING size",
            (HoldKind.BATCH.value, hold_key, run_id),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- runs held for a missing function (engine/held.py) ---------------------------

    def hold_run(self, held: HeldRun) -> HeldRun:
        self._db.execute(
            "INSERT INTO held_runs (run_id, function_id, app, since, until) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (held.run_id, held.function_id, held.app, held.since, held.until),
        )
        row = self._db.execute(
            f"SELECT {HELD_COLUMNS} FROM held_runs WHERE run_id = ?", (held.run_id,)
        ).fetchone()
        return HeldRun(*row)

    def release_held(self, run_id: str, until: int, now: int, keep: str | None = None) -> list[Job]:
        db = self._db
        db.execute("DELETE FROM held_runs WHERE run_id = ?", (run_id,))
        rows = db.execute(
            "UPDATE jobs SET run_at = ? WHERE run_id = ? AND run_at = ? AND job_id != ? "
            f"AND kind IN {CALL_KINDS_SQL} "
            "RETURNING job_id, run_id, kind, step_id, run_at, attempt, priority, data",
            (now, run_id, until, keep or ""),
        ).fetchall()
        return [job_from_row(row) for row in rows]

    def set_function_apps(self, app: str, function_ids: Sequence[str], *, at: int) -> None:
        # Rewritten only when the owner changes: an app syncs every few seconds in dev.
        self._db.executemany(
            "INSERT INTO function_apps (function_id, app, synced_at) VALUES (?, ?, ?) "
            "ON CONFLICT (function_id) DO UPDATE SET app = excluded.app, "
            "synced_at = excluded.synced_at WHERE app != excluded.app",
            [(function_id, app, at) for function_id in function_ids],
        )

    def function_app(self, function_id: str) -> str | None:
        row = self._db.execute(
            "SELECT app FROM function_apps WHERE function_id = ?", (function_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- reruns (engine/rerun.py) ------------------------------------------------------

    def step_position(self, run_id: str, step: str) -> tuple[str, int] | None:
        # Only a retried failure (StepError) is an attempt of the step itself: a failed call
        # of the function (FunctionError), a dropped step or a note belongs to no attempt.
        row = self._db.execute(
            "SELECT step_id, position FROM ("
            "SELECT step_id, seq AS position FROM steps WHERE run_id = ? "
            "AND (user_id = ? OR step_id = ?) "
            "UNION ALL SELECT step_id, after_seq + 1 FROM attempts WHERE run_id = ? "
            "AND op = 'StepError' AND (user_id = ? OR step_id = ?)) "
            "ORDER BY position, step_id LIMIT 1",
            (run_id, step, step, run_id, step, step),
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def step_group(self, run_id: str, step_id: str) -> StepGroup | None:
        db = self._db
        row = db.execute(
            "SELECT group_key, after_seq FROM step_groups WHERE run_id = ? AND step_id = ?",
            (run_id, step_id),
        ).fetchone()
        if row is None:
            return None
        key, after = row
        members = db.execute(
            "SELECT step_groups.step_id, steps.memo FROM step_groups LEFT JOIN steps "
            "ON steps.run_id = step_groups.run_id AND steps.step_id = step_groups.step_id "
            "WHERE step_groups.run_id = ? AND step_groups.group_key = ? "
            "AND step_groups.step_id != ?",
            (run_id, key, step_id),
        ).fetchall()
        # A member completed if it has a result that is not an error (StepFailed, an invoke
        # whose child failed, ...); one still pending has no row in steps.
        completed = sorted(
            member
            for member, memo in members
            if memo is not None and memo_value(orjson.loads(memo))[0] != "error"
        )
        return StepGroup(after=int(after), completed=tuple(completed))

    def copy_steps(
        self, source: str, target: str, *, before: int | None, also: Sequence[str] = ()
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
            "ended_at, app_version, copied_from) SELECT ?, step_id, "
            "row_number() OVER (ORDER BY seq, step_id), memo, user_id, op, attempt, started_at, "
            "ended_at, app_version, coalesce(copied_from, run_id) FROM steps WHERE run_id = ? "
            "AND (seq < ? OR step_id IN (SELECT value FROM json_each(?))) ORDER BY seq, step_id",
            (
                target,
                source,
                before if before is not None else 2**62,
                orjson.dumps(list(also)).decode(),
            ),
        )
        return max(cur.rowcount, 0)

    def record_rerun(self, origin: RerunOrigin) -> None:
        self._db.execute(
            "INSERT INTO reruns (run_id, original_id, from_step, copied, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                origin.run_id,
                origin.original_id,
                origin.from_step,
                origin.copied,
                origin.created_at,
            ),
        )

    def holds_job(self, job_id: str, run_id: str | None = None) -> bool:
        return True  # one process: every job is its own
