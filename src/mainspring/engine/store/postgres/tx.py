"""Writes of the PostgreSQL backend: the :class:`~mainspring.engine.store.contract.Tx` of
one transaction, on a synchronous psycopg connection.

The statements mirror ``sqlite_tx.py`` one for one (same tables, same meaning); what
differs is the dialect (``%s`` placeholders, ``= ANY(array)`` for lists, bytea splicing)
and the pause paths, which live in a table because other processes add pauses too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg

from mainspring.engine.records import (
    Job,
    Pause,
    RunStatus,
    StoredEvent,
)
from mainspring.engine.store.contract import LeaseLostError, NewRun, StepRow
from mainspring.engine.store.postgres.answers import Answers, one_row
from mainspring.engine.store.postgres.leases import (
    LeaseBook,
    claim_jobs,
    held_elsewhere,
    release_leases,
    release_limited,
    renew_leases,
)
from mainspring.engine.store.postgres.tx_more import MoreUnits
from mainspring.engine.store.rows import (
    CALL_KINDS,
    FINISHED_SQL,
    PAUSE_COLUMNS,
    UPDATABLE_RUN_FIELDS,
    job_from_row,
    job_values,
    new_run_values,
    pause_from_row,
)
from mainspring.protocol.match_keys import value_key

_JOB_COLUMNS = "job_id, run_id, kind, step_id, run_at, attempt, priority, data"
_INSERT_EVENT = (
    "INSERT INTO events (internal_id, id, name, data, ts, received_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
_INSERT_RUN = (
    "INSERT INTO runs (run_id, function_id, event_id, events, idempotency_key, status, "
    "max_attempts, created_at, admitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)
_INSERT_STEP = (
    "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
    "ended_at, app_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_JOB_VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
_INSERT_JOB = (
    "INSERT INTO jobs (job_id, run_id, kind, step_id, run_at, attempt, priority, data, "
    "created_at, lease_owner, lease_until)"
)
#: ``pause_paths`` stands for pauses without an index with this path.
NO_PATH = ""


def _recorded_before(run_id: str, step_id: str) -> RuntimeError:
    return RuntimeError(
        f"step {step_id} of run {run_id} was pending, yet recorded before: this result is "
        "not recorded, and the run goes on from what is"
    )


def _json(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


class PostgresTx(MoreUnits):
    """The :class:`~mainspring.engine.store.contract.Tx` of one PostgreSQL transaction."""

    __slots__ = (
        "_book",
        "_db",
        "_elsewhere",
        "_functions",
        "_paths",
        "_pending",
        "_unverified",
        "answers",
    )

    def __init__(
        self,
        db: psycopg.Connection[Any],
        book: LeaseBook,
        pipe: psycopg.Pipeline | None = None,
    ) -> None:
        self._db = db
        self._book = book
        #: In pipeline mode, statements go out without waiting for their answers; a unit
        #: waits only where it reads one (a fetch, a row count). What each unit sent, and
        #: the leases it relied on, are checked as answers come (see answers.py).
        self.answers = Answers(pipe, book.held.discard)
        #: Runs found held by another process in this transaction (the write lock keeps
        #: that true until it commits).
        self._elsewhere: dict[str, bool] = {}
        #: Function ids of runs looked up in this transaction.
        self._functions: dict[str, str | None] = {}
        #: Pause paths per event name, read once per transaction: under the write lock no
        #: other process adds any before it commits (an intake unit asks for each event).
        self._paths: dict[str, list[str]] = {}
        #: Members of a parallel group still pending, per run, as this transaction last
        #: read or wrote the set (forgotten when a unit is undone: :meth:`undone`).
        self._pending: dict[str, set[str]] = {}
        #: The job the running unit acts on, until the store confirmed this process holds
        #: it (by the unit's own write of its row, or by :meth:`end_unit`).
        self._unverified: str | None = None

    def _run(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self._db.execute(sql, args)
        self.answers.sent(cur)
        return cur

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = self._run(sql, args)
        self.answers.wait()
        return cur.rowcount

    def undone(self, first: int) -> None:
        """Units from ``first`` on were undone: what this transaction remembered of what
        they wrote goes."""
        self.answers.forget_from(first)
        self._pending.clear()

    def begin_unit(self, index: int) -> None:
        """The next unit of a batch starts: a savepoint to undo it back to (see store.py)."""
        self.answers.unit = index
        self._unverified = None
        self._run(f"SAVEPOINT u{index}")

    def insert_event(self, event: StoredEvent) -> bool:
        data = event.data_json if event.data_json is not None else orjson.dumps(event.data)
        args = (event.internal_id, event.id, event.name, data, event.ts, event.received_at)
        if event.name in self._paths:
            return self._count(f"{_INSERT_EVENT} ON CONFLICT DO NOTHING", args) == 1
        # The intake asks next for the pauses this event may resume: their paths come in
        # the same round trip.
        row = self._run(
            f"WITH inserted AS ({_INSERT_EVENT} ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT EXISTS (SELECT 1 FROM inserted), "
            "ARRAY(SELECT match_path FROM pause_paths WHERE event_name = %s)",
            (*args, event.name),
        ).fetchone()
        assert row is not None
        self._paths[event.name] = [str(path) for path in row[1]]
        return bool(row[0])

    def create_run(self, run: NewRun) -> bool:
        if self._count(_INSERT_RUN, new_run_values(run)) != 1:
            return False
        self._elsewhere[run.run_id] = False  # a run made here: no process holds it yet
        return True

    def start_run(self, run: NewRun, job: Job) -> bool:
        # One statement (one round trip): the run, and its first job if the run is new.
        self._elsewhere[run.run_id] = False  # if made here, no process holds it yet
        self._functions[run.run_id] = run.function_id
        take, values = self._job_values(job)
        row = self._run(
            f"WITH made AS ({_INSERT_RUN} RETURNING 1), "
            f"queued AS ({_INSERT_JOB} SELECT {_JOB_VALUES} WHERE EXISTS (SELECT 1 FROM made) "
            "ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT EXISTS (SELECT 1 FROM made), EXISTS (SELECT 1 FROM queued)",
            (*new_run_values(run), *values),
        ).fetchone()
        assert row is not None
        if not row[0]:
            # The run exists: what was assumed of a run made here does not hold.
            del self._elsewhere[run.run_id], self._functions[run.run_id]
            return False
        if row[1]:
            self._queued(job, take)
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
        if not grouped:
            count = self._count(
                f"{_INSERT_STEP} ON CONFLICT DO NOTHING",
                (run_id, step_id, seq, memo, user_id, op, attempt, started_at, at, app_version),
            )
            return count == 1, False
        values = (run_id, step_id, seq, memo, user_id, op, attempt, started_at, at, app_version)
        waiting = self._pending.get(run_id)
        if waiting is not None and step_id in waiting:
            # Still pending, as this transaction read (under the write lock, nothing else
            # writes the set): not recorded yet. Recorded without waiting for the answer,
            # which must say so, or the unit fails and nothing of it is recorded.
            cur = self._run(
                f"WITH recorded AS ({_INSERT_STEP} ON CONFLICT DO NOTHING RETURNING step_id) "
                "DELETE FROM pending WHERE run_id = %s AND step_id IN "
                "(SELECT step_id FROM recorded)",
                (*values, run_id),
            )
            self.answers.check(cur, one_row, lambda: _recorded_before(run_id, step_id))
            waiting.discard(step_id)
            return True, bool(waiting)
        # One statement: record the step, take it out of the pending set, and say which
        # other members are still out. The final SELECT sees the table as it was before the
        # DELETE (a data-modifying CTE's snapshot), hence the step itself is left out.
        row = self._run(
            f"WITH recorded AS ({_INSERT_STEP} ON CONFLICT DO NOTHING RETURNING step_id), "
            "done AS (DELETE FROM pending WHERE run_id = %s AND step_id IN "
            "(SELECT step_id FROM recorded)) "
            "SELECT EXISTS (SELECT 1 FROM recorded), ARRAY(SELECT step_id FROM pending "
            "WHERE run_id = %s AND (step_id != %s OR NOT EXISTS (SELECT 1 FROM recorded)))",
            (*values, run_id, run_id, step_id),
        ).fetchone()
        assert row is not None
        self._pending[run_id] = others = {str(member) for member in row[1]}
        return bool(row[0]), bool(others)

    def save_steps(
        self, run_id: str, rows: Sequence[StepRow], *, attempt: int, app_version: str | None
    ) -> set[str]:
        # A chain's steps in one statement: one round trip however long the chain.
        found = self._run(
            "INSERT INTO steps (run_id, step_id, seq, memo, user_id, op, attempt, started_at, "
            "ended_at, app_version) SELECT %s, step_id, seq, memo, user_id, op, %s, "
            "started_at, ended_at, %s FROM unnest(%s::text[], %s::integer[], %s::bytea[], "
            "%s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
            "AS rows (step_id, seq, memo, user_id, op, started_at, ended_at) "
            "ON CONFLICT DO NOTHING RETURNING step_id",
            (
                run_id,
                attempt,
                app_version,
                [row.step_id for row in rows],
                [row.seq for row in rows],
                [row.memo for row in rows],
                [row.user_id for row in rows],
                [row.op for row in rows],
                [row.started_at for row in rows],
                [row.ended_at for row in rows],
            ),
        ).fetchall()
        return {str(row[0]) for row in found}

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
        count = self._count(
            "INSERT INTO attempts (run_id, step_id, attempt, after_seq, user_id, op, started_at, "
            "ended_at, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (run_id, step_id, attempt, after_seq, user_id, op, started_at, ended_at, error),
        )
        return count == 1

    def step_names(self, run_id: str, step_ids: Sequence[str]) -> dict[str, str]:
        rows = self._run(
            "SELECT step_id, user_id FROM steps WHERE run_id = %s AND step_id = ANY(%s)",
            (run_id, list(step_ids)),
        ).fetchall()
        return {str(row[0]): str(row[1]) for row in rows}

    def _has_pending(self, run_id: str) -> bool:
        row = self._run("SELECT 1 FROM pending WHERE run_id = %s LIMIT 1", (run_id,)).fetchone()
        return row is not None

    def drop_pending(self, run_id: str, step_id: str) -> bool:
        self._run("DELETE FROM pending WHERE run_id = %s AND step_id = %s", (run_id, step_id))
        waiting = self._pending.get(run_id)
        if waiting is not None:
            waiting.discard(step_id)
            return bool(waiting)
        return self._has_pending(run_id)

    def set_pending(
        self, run_id: str, step_ids: Sequence[str], coalesce_key: str | None, *, after_seq: int
    ) -> None:
        members = list(step_ids)
        self._pending.pop(run_id, None)  # which members are recorded already is not known
        self._run("DELETE FROM pending WHERE run_id = %s", (run_id,))
        # Members already recorded (a race with their own save) are not pending.
        self._run(
            "INSERT INTO pending (run_id, step_id) SELECT %s, member FROM unnest(%s::text[]) "
            "AS member WHERE NOT EXISTS (SELECT 1 FROM steps WHERE run_id = %s "
            "AND step_id = member) ON CONFLICT DO NOTHING",
            (run_id, members, run_id),
        )
        self._run("UPDATE runs SET coalesce_key = %s WHERE run_id = %s", (coalesce_key, run_id))
        if coalesce_key is not None:
            # Kept for reruns: the batch a step was first planned in (see sqlite_tx.py).
            self._run(
                "INSERT INTO step_groups (run_id, step_id, group_key, after_seq) "
                "SELECT %s, member, %s, %s FROM unnest(%s::text[]) AS member "
                "ON CONFLICT DO NOTHING",
                (run_id, coalesce_key, after_seq, members),
            )

    def record_group(
        self, run_id: str, step_ids: Sequence[str], group_key: str, *, after_seq: int
    ) -> None:
        self._run(
            "INSERT INTO step_groups (run_id, step_id, group_key, after_seq) "
            "SELECT %s, member, %s, %s FROM unnest(%s::text[]) AS member "
            "ON CONFLICT DO NOTHING",
            (run_id, group_key, after_seq, list(step_ids)),
        )

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - UPDATABLE_RUN_FIELDS
        if unknown:
            raise ValueError(f"update_run: unknown fields {sorted(unknown)}")
        values = [bool(v) if k == "force_step_plan" else v for k, v in fields.items()]
        assignments = ", ".join(f"{name} = %s" for name in fields)
        self._run(f"UPDATE runs SET {assignments} WHERE run_id = %s", (*values, run_id))

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
        # One statement (one round trip): the run's final state, and everything of it that
        # only an unfinished run has, removed by data-modifying CTEs.
        row = self._run(
            "WITH finished AS (UPDATE runs SET status = %s, output = %s, error = %s, "
            f"ended_at = %s WHERE run_id = %s AND status NOT IN {FINISHED_SQL} "
            "RETURNING run_id), "
            "gone AS (DELETE FROM jobs WHERE run_id IN (SELECT run_id FROM finished) "
            "RETURNING job_id), "
            "p AS (DELETE FROM pauses WHERE run_id IN (SELECT run_id FROM finished)), "
            "h AS (DELETE FROM flow_holds WHERE run_id IN (SELECT run_id FROM finished)), "
            "r AS (DELETE FROM held_runs WHERE run_id IN (SELECT run_id FROM finished)), "
            "s AS (DELETE FROM pending WHERE %s AND run_id IN (SELECT run_id FROM finished)) "
            "SELECT (SELECT count(*) FROM finished), ARRAY(SELECT job_id FROM gone), "
            # Read before the deletes: who held the running unit's job (see holds_job).
            "(SELECT lease_owner FROM jobs WHERE job_id = %s)",
            (status.value, output, error, at, run_id, grouped, self._unverified),
        ).fetchone()
        if grouped:
            self._pending.pop(run_id, None)
        if row is None or row[0] != 1:
            return False
        if self._unverified is not None and self._unverified in row[1]:
            if row[2] != self._book.owner:
                raise LeaseLostError(f"job {self._unverified} was taken over by another process")
            self._unverified = None
        self._book.held.difference_update(str(job_id) for job_id in row[1])
        self._book.finished.append(run_id)
        return True

    def _job_values(self, job: Job) -> tuple[bool, tuple[Any, ...]]:
        """Whether this process takes the job on the spot, and its row's values. Taken when
        it is due soon and no other process holds its run (see leases.py); otherwise left
        for the claims, which the commit wakes."""
        book = self._book
        now = book.now()
        take = job.run_at <= now + book.lease_ms // 2 and self._may_take(job.run_id)
        lease = (book.owner, now + book.lease_ms) if take else (None, None)
        return take, (*job_values(job), *lease)

    def _queued(self, job: Job, take: bool) -> None:
        """A job was inserted: this process holds it, or the claims are woken at commit."""
        if take:
            self._book.held.add(job.id)
        else:
            self._book.notify = True

    def enqueue(self, job: Job) -> bool:
        take, values = self._job_values(job)
        if self._count(f"{_INSERT_JOB} VALUES ({_JOB_VALUES}) ON CONFLICT DO NOTHING", values):
            self._queued(job, take)
            return True
        return False

    def enqueue_all(self, jobs: Sequence[Job]) -> list[Job]:
        if len(jobs) < 2:
            return [job for job in jobs if self.enqueue(job)]
        # One statement for the lot (a parallel batch's members): one round trip. Each
        # job's row as enqueue makes it, sent column by column.
        made = [self._job_values(job) for job in jobs]
        columns = [list(column) for column in zip(*(values for _, values in made), strict=True)]
        rows = self._run(
            f"{_INSERT_JOB} SELECT * FROM unnest(%s::text[], "
            "%s::text[], %s::text[], %s::text[], %s::bigint[], %s::integer[], %s::bigint[], "
            "%s::bytea[], %s::bigint[], %s::text[], %s::bigint[]) "
            "ON CONFLICT DO NOTHING RETURNING job_id",
            columns,
        ).fetchall()
        inserted = {str(row[0]) for row in rows}
        for job, (take, _) in zip(jobs, made, strict=True):
            if job.id in inserted:
                self._queued(job, take)
        return [job for job in jobs if job.id in inserted]

    def _take_if_due(self, job_id: str, run_id: str, run_at: int) -> None:
        """A job moved earlier: take it, as :meth:`enqueue` would, unless another process
        holds it or its run; then wake the claims instead."""
        book = self._book
        now = book.now()
        if run_at > now + book.lease_ms // 2 or job_id in book.held:
            return
        if self._may_take(run_id):
            row = self._run(
                "UPDATE jobs SET lease_owner = %s, lease_until = %s WHERE job_id = %s "
                "AND lease_owner IS NULL RETURNING 1",
                (book.owner, now + book.lease_ms, job_id),
            ).fetchone()
            if row is not None:
                book.held.add(job_id)
                return
        book.notify = True

    def _may_take(self, run_id: str) -> bool:
        """Whether this process may take a job of this run now: no other process holds the
        run, and its function has no concurrency limit unless this is the flow leader."""
        if self._book.limited and not self._book.leading:
            function_id = self._functions.get(run_id, "")
            if function_id == "":
                row = self._run(
                    "SELECT function_id FROM runs WHERE run_id = %s", (run_id,)
                ).fetchone()
                function_id = self._functions[run_id] = None if row is None else str(row[0])
            if not self._book.may_run(function_id):
                return False
        return not self._held_elsewhere(run_id)

    def _held_elsewhere(self, run_id: str) -> bool:
        known = self._elsewhere.get(run_id)
        if known is None:
            known = self._elsewhere[run_id] = held_elsewhere(
                self._db, self._book, run_id, self._book.now()
            )
        return known

    # -- leases (engine/claims.py) -----------------------------------------------------

    def holds_job(self, job_id: str, run_id: str | None = None) -> bool:
        # Checked by the unit's own write of the job's row, which the unit makes anyway (a
        # round trip saved per unit); a unit that does not write it is checked at its end.
        # Either way a unit on a job another process holds raises and is undone whole.
        self._unverified = job_id
        if run_id is not None:
            # Holding one of its jobs, this process holds the run: no other does.
            self._elsewhere[run_id] = False
        return True

    def _verified(self, job_id: str, cur: psycopg.Cursor[Any]) -> None:
        """After a write of the job's row that required this process to hold it: its row
        count, once answered, says whether it did (see answers.py)."""
        if job_id != self._unverified:
            return
        self._unverified = None
        self.answers.check_lease(job_id, cur)

    def _owned(self, job_id: str) -> str:
        """The condition a write of the running unit's job adds: this process holds it."""
        return " AND lease_owner = %s" if job_id == self._unverified else ""

    def end_unit(self) -> None:
        """The unit is done. If it never wrote its job's row, a read of the row's owner
        checks the lease it relied on; like the checks riding on its writes, it is judged
        once answered, which the unit does not wait for (see answers.py). A lost lease
        already answered raises now."""
        job_id, self._unverified = self._unverified, None
        if job_id is not None:
            cur = self._run("SELECT lease_owner FROM jobs WHERE job_id = %s", (job_id,))
            self.answers.check_lease(job_id, cur, self._book.owner)
        self.answers.check_answered()

    def claim_jobs(self, limit: int) -> list[Job]:
        return claim_jobs(self._db, self._book, limit)

    def renew_leases(self) -> list[str]:
        return renew_leases(self._db, self._book)

    def release_leases(self) -> int:
        return release_leases(self._db, self._book)

    def release_limited(self, job_ids: Sequence[str]) -> int:
        return release_limited(self._db, self._book, list(job_ids))

    def save_app(self, name: str, body: bytes, *, at: int) -> None:
        self._run(
            "INSERT INTO apps (name, body, synced_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET body = excluded.body, synced_at = excluded.synced_at",
            (name, body, at),
        )

    def delete_app(self, name: str) -> None:
        self._run("DELETE FROM apps WHERE name = %s", (name,))

    def delete_job(self, job_id: str) -> None:
        owned = self._owned(job_id)
        args = (job_id, self._book.owner) if owned else (job_id,)
        cur = self._run(f"DELETE FROM jobs WHERE job_id = %s{owned}", args)
        self._verified(job_id, cur)
        self._book.held.discard(job_id)

    def reschedule_job(self, job_id: str, *, run_at: int, attempt: int) -> None:
        owned = self._owned(job_id)
        args = (run_at, attempt, job_id, *((self._book.owner,) if owned else ()))
        cur = self._run(
            f"UPDATE jobs SET run_at = %s, attempt = %s WHERE job_id = %s{owned} RETURNING run_id",
            args,
        )
        self._verified(job_id, cur)
        row = cur.fetchone()
        if row is not None:
            self._take_if_due(job_id, str(row[0]), run_at)

    def create_pause(self, pause: Pause) -> bool:
        count = self._count(
            f"INSERT INTO pauses ({PAUSE_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
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
        if count != 1:
            return False
        path = pause.match_path if pause.match_path is not None else NO_PATH
        self._run(
            "INSERT INTO pause_paths (event_name, match_path) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING",
            (pause.event_name, path),
        )
        known = self._paths.get(pause.event_name)
        if known is not None and path not in known:
            known.append(path)
        return True

    def claim_pause(self, pause_id: str) -> Pause | None:
        row = self._run(
            f"DELETE FROM pauses WHERE pause_id = %s RETURNING {PAUSE_COLUMNS}", (pause_id,)
        ).fetchone()
        return None if row is None else pause_from_row(row)

    def pauses_for_event(self, name: str, event: Mapping[str, Any], now: int) -> list[Pause]:
        paths = self._paths.get(name)
        if paths is None:
            paths = self._paths[name] = [
                str(row[0])
                for row in self._run(
                    "SELECT match_path FROM pause_paths WHERE event_name = %s", (name,)
                ).fetchall()
            ]
        if not paths:
            return []
        probes: list[tuple[str, str]] = []
        for path in paths:
            if path == NO_PATH:
                continue
            key = value_key(event, path)
            if key is not None:
                probes.append((path, key))
        parts: list[str] = []
        args: list[Any] = []
        if probes:
            parts.append(
                f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = %s AND expires_at > %s "
                "AND (match_path, match_value) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[]))"
            )
            args += [name, now, [p for p, _ in probes], [k for _, k in probes]]
        if NO_PATH in paths:
            parts.append(
                f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = %s "
                "AND match_path IS NULL AND expires_at > %s"
            )
            args += [name, now]
        if not parts:
            return []
        found = [pause_from_row(row) for row in self._run(" UNION ALL ".join(parts), args)]
        found.sort(key=lambda p: (p.created_at, p.id))
        return found

    def job_exists(self, job_id: str) -> bool:
        return self._run("SELECT 1 FROM jobs WHERE job_id = %s", (job_id,)).fetchone() is not None

    def repurpose_job(self, job_id: str, job: Job) -> None:
        owned = self._owned(job_id)
        cur = self._run(
            "UPDATE jobs SET kind = %s, step_id = %s, run_at = %s, attempt = %s, data = %s "
            f"WHERE job_id = %s{owned}",
            (
                job.kind.value,
                job.step_id,
                job.run_at,
                job.attempt,
                _json(job.data),
                job_id,
                *((self._book.owner,) if owned else ()),
            ),
        )
        self._verified(job_id, cur)
        if job_id in self._book.held and not self._may_take(job.run_id):
            # Its function has a limit and this process is no longer the flow leader:
            # the run's next job is the leader's.
            self._run(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE job_id = %s",
                (job_id,),
            )
            self._book.held.discard(job_id)
            self._book.notify = True

    # -- runs held for a missing function (engine/held.py) ---------------------------

    def release_held(self, run_id: str, until: int, now: int, keep: str | None = None) -> list[Job]:
        self._run("DELETE FROM held_runs WHERE run_id = %s", (run_id,))
        rows = self._run(
            "UPDATE jobs SET run_at = %s WHERE run_id = %s AND run_at = %s AND job_id != %s "
            f"AND kind = ANY(%s) RETURNING {_JOB_COLUMNS}, lease_owner",
            (now, run_id, until, keep or "", list(CALL_KINDS)),
        ).fetchall()
        jobs = [job_from_row(row[:-1]) for row in rows]
        for job in jobs:
            self._take_if_due(job.id, job.run_id, job.run_at)
        return jobs
