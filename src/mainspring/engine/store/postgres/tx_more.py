"""More writes of the PostgreSQL backend: flow control's cells and holds, the runs held for
a missing function, and reruns; plain statements, one table each (see ``tx.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from mainspring.engine.records import HeldRun, Hold, HoldKind, RerunOrigin
from mainspring.engine.store.contract import StepGroup
from mainspring.engine.store.rows import HELD_COLUMNS
from mainspring.protocol.messages import memo_value


class MoreUnits:
    """The part of :class:`~mainspring.engine.store.postgres.tx.PostgresTx` that needs only
    ``_run``: flow control, held runs and reruns."""

    __slots__ = ()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        raise NotImplementedError

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement and wait for its row count (statements whose answer nobody
        reads go out with the next one that is read: see ``tx.py``)."""
        raise NotImplementedError

    # -- flow control ------------------------------------------------------------------

    def get_cell(self, key: str, now: int) -> tuple[int, str | None] | None:
        row = self._run(
            "SELECT tat, run_id FROM flow_cells WHERE key = %s AND expires_at > %s", (key, now)
        ).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def put_cell(self, key: str, tat: int, run_id: str | None, expires_at: int) -> None:
        self._run(
            "INSERT INTO flow_cells (key, tat, run_id, expires_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, run_id = excluded.run_id, "
            "expires_at = excluded.expires_at",
            (key, tat, run_id, expires_at),
        )

    def purge_cells(self, now: int) -> int:
        return self._count("DELETE FROM flow_cells WHERE expires_at <= %s", (now,))

    def get_hold(self, kind: HoldKind, key: str) -> Hold | None:
        row = self._run(
            "SELECT run_id, since, size FROM flow_holds WHERE kind = %s AND key = %s",
            (kind.value, key),
        ).fetchone()
        return None if row is None else Hold(kind, key, row[0], int(row[1]), int(row[2]))

    def put_hold(self, hold: Hold) -> None:
        self._run(
            "INSERT INTO flow_holds (kind, key, run_id, since, size) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (kind, key) DO UPDATE SET run_id = excluded.run_id, "
            "since = excluded.since, size = excluded.size",
            (hold.kind.value, hold.key, hold.run_id, hold.since, hold.size),
        )

    def close_hold(self, kind: HoldKind, run_id: str) -> bool:
        return (
            self._count(
                "DELETE FROM flow_holds WHERE run_id = %s AND kind = %s", (run_id, kind.value)
            )
            > 0
        )

    def add_run_event(self, dedupe_key: str, event_id: str, run_id: str) -> bool:
        return (
            self._count(
                "INSERT INTO run_events (dedupe_key, event_id, run_id) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (dedupe_key, event_id, run_id),
            )
            == 1
        )

    def append_run_event(self, run_id: str, event_json: bytes, hold_key: str) -> int:
        # The events column is a JSON array: splice the new event in before its "]".
        self._run(
            "UPDATE runs SET events = substring(events FROM 1 FOR octet_length(events) - 1) "
            "|| '\\x2c'::bytea || %s || '\\x5d'::bytea WHERE run_id = %s",
            (event_json, run_id),
        )
        row = self._run(
            "UPDATE flow_holds SET size = size + 1 WHERE kind = %s AND key = %s "
            "AND run_id = %s RETURNING size",
            (HoldKind.BATCH.value, hold_key, run_id),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- runs held for a missing function (engine/held.py) ---------------------------

    def hold_run(self, held: HeldRun) -> HeldRun:
        self._run(
            "INSERT INTO held_runs (run_id, function_id, app, since, until) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (held.run_id, held.function_id, held.app, held.since, held.until),
        )
        row = self._run(
            f"SELECT {HELD_COLUMNS} FROM held_runs WHERE run_id = %s", (held.run_id,)
        ).fetchone()
        assert row is not None  # inserted above, or already there
        return HeldRun(*row)

    def set_function_apps(self, app: str, function_ids: Sequence[str], *, at: int) -> None:
        # Rewritten only when the owner changes: an app syncs every few seconds in dev.
        self._run(
            "INSERT INTO function_apps (function_id, app, synced_at) "
            "SELECT function_id, %s, %s FROM unnest(%s::text[]) AS function_id "
            "ON CONFLICT (function_id) DO UPDATE SET app = excluded.app, "
            "synced_at = excluded.synced_at WHERE function_apps.app != excluded.app",
            (app, at, list(function_ids)),
        )

    def function_app(self, function_id: str) -> str | None:
        row = self._run(
            "SELECT app FROM function_apps WHERE function_id = %s", (function_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- reruns (engine/rerun.py) ------------------------------------------------------

    def step_position(self, run_id: str, step: str) -> tuple[str, int] | None:
        # Only a retried failure (StepError) is an attempt of the step itself.
        row = self._run(
            "SELECT step_id, position FROM ("
            "SELECT step_id, seq AS position FROM steps WHERE run_id = %s "
            "AND (user_id = %s OR step_id = %s) "
            "UNION ALL SELECT step_id, after_seq + 1 FROM attempts WHERE run_id = %s "
            "AND op = 'StepError' AND (user_id = %s OR step_id = %s)) AS found "
            "ORDER BY position, step_id LIMIT 1",
            (run_id, step, step, run_id, step, step),
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def step_group(self, run_id: str, step_id: str) -> StepGroup | None:
        row = self._run(
            "SELECT group_key, after_seq FROM step_groups WHERE run_id = %s AND step_id = %s",
            (run_id, step_id),
        ).fetchone()
        if row is None:
            return None
        key, after = row
        members = self._run(
            "SELECT step_groups.step_id, steps.memo FROM step_groups LEFT JOIN steps "
            "ON steps.run_id = step_groups.run_id AND steps.step_id = step_groups.step_id "
            "WHERE step_groups.run_id = %s AND step_groups.group_key = %s "
            "AND step_groups.step_id != %s",
            (run_id, key, step_id),
        ).fetchall()
        completed = sorted(
            str(member)
            for member, memo in members
            if memo is not None and memo_value(orjson.loads(memo))[0] != "error"
        )
        return StepGroup(after=int(after), completed=tuple(completed))

    def copy_steps(
        self, source: str, target: str, *, before: int | None, also: Sequence[str] = ()
    ) -> int:
        count = self._count(
            "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
            "ended_at, app_version, copied_from) SELECT %s, step_id, "
            "row_number() OVER (ORDER BY seq, step_id), memo, user_id, op, attempt, started_at, "
            "ended_at, app_version, coalesce(copied_from, run_id) FROM steps WHERE run_id = %s "
            "AND (seq < %s OR step_id = ANY(%s)) ORDER BY seq, step_id",
            (target, source, before if before is not None else 2**62, list(also)),
        )
        return max(count, 0)

    def record_rerun(self, origin: RerunOrigin) -> None:
        self._run(
            "INSERT INTO reruns (run_id, original_id, from_step, copied, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (
                origin.run_id,
                origin.original_id,
                origin.from_step,
                origin.copied,
                origin.created_at,
            ),
        )
