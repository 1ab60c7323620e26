"""Late answers on PostgreSQL: writes go out in pipeline mode, so a unit may end before the
database has answered its writes, and learn of their failure only during a later unit of
the same transaction, or just before the commit (engine/store/postgres/answers.py).

Whatever the moment the failure is known, the failed unit is told its own error, the
units after it in the transaction that ran meanwhile are told they were undone
(``UnitUndoneError``) and recorded nothing, the units before it and after the undo are
recorded, and a lost lease is a failure like any other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from mainspring.engine.records import Job, JobKind
from mainspring.engine.store.contract import LeaseLostError, NewRun, UnitUndoneError
from mainspring.engine.store.postgres import writer
from mainspring.engine.store.postgres.store import PostgresStore
from mainspring.engine.store.postgres.tx import PostgresTx
from tests.postgres_support import TEMPLATES


@pytest.fixture
async def store() -> AsyncIterator[PostgresStore]:
    with TEMPLATES.clone() as url:
        backend = PostgresStore(url, durability="normal")
        await backend.open()
        try:
            yield backend
        finally:
            await backend.close()


def job(job_id: str, run_at: int = 0) -> Job:
    return Job(id=job_id, run_id="r1", kind=JobKind.DISCOVER, run_at=run_at)


def queue(job_id: str) -> Any:
    def unit(tx: PostgresTx) -> bool:
        return tx.enqueue(job(job_id))

    return unit


def fails_unanswered(tx: PostgresTx) -> None:
    """Writes a job, then sends a statement that fails 50 ms later (so the units after it
    run before its answer comes), without waiting for its answer."""
    tx.enqueue(job("before-failure"))
    # (A division the planner cannot fold: it fails when run, after the sleep.)
    tx._run("SELECT CASE WHEN pg_sleep(0.05)::text = '' THEN 1 / (random() > 2)::int END")


def sleeps(tx: PostgresTx) -> None:
    """Sends nothing but its savepoint; by its end, the answers to what came before it are
    in (``fails_unanswered``'s failure too)."""
    time.sleep(0.15)


def reads(tx: PostgresTx) -> bool:
    return tx.job_exists("anything")


def writes(tx: PostgresTx) -> None:
    """Sends one write, and waits for no answer."""
    tx.put_cell("written", 1, None, 2**50)


async def together(store: PostgresStore, *units: Any) -> list[Any]:
    """Run the units in one transaction (sent in the same turn of the loop)."""
    return await asyncio.gather(*(store.transact(unit) for unit in units), return_exceptions=True)


async def take_over(store: PostgresStore, job_id: str) -> None:
    """Another process takes the job over (as if this one's lease had run out)."""
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as other:
        await other.execute(
            "UPDATE jobs SET lease_owner = 'another', lease_until = %s WHERE job_id = %s",
            (2**50, job_id),
        )


async def job_ids(store: PostgresStore) -> list[str]:
    return sorted(j.id for j in await store.load_jobs())


async def test_a_failure_answered_during_a_later_unit_undoes_both(store: PostgresStore) -> None:
    results = await together(store, queue("first"), fails_unanswered, reads, queue("last"))
    assert results[0] is True
    assert isinstance(results[1], psycopg.errors.DivisionByZero)
    # The reading unit met the failure's answer: it ran, and was undone with it.
    assert isinstance(results[2], UnitUndoneError)
    assert "division by zero" in str(results[2])
    assert results[3] is True
    assert await job_ids(store) == ["first", "last"]


async def test_a_failure_answered_only_before_the_commit(store: PostgresStore) -> None:
    # No unit reads after the failing one: its answer comes when the commit waits for all.
    results = await together(store, queue("first"), fails_unanswered, writes)
    assert results[0] is True
    assert isinstance(results[1], psycopg.errors.DivisionByZero)
    assert isinstance(results[2], UnitUndoneError)
    assert await job_ids(store) == ["first"]
    assert await store.transact(lambda tx: tx.get_cell("written", 0)) is None


async def test_a_unit_the_failure_came_before_runs_after_the_undo(store: PostgresStore) -> None:
    # The failure's answer is in when the third unit starts: it has not run, so it runs
    # once the failed unit (and the one that ran meanwhile) are undone.
    results = await together(store, queue("first"), fails_unanswered, sleeps, queue("third"))
    assert results[0] is True
    assert isinstance(results[1], psycopg.errors.DivisionByZero)
    assert isinstance(results[2], UnitUndoneError)
    assert results[3] is True
    assert await job_ids(store) == ["first", "third"]


async def test_a_unit_alone_fails_whole(store: PostgresStore) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        await store.transact(fails_unanswered)
    assert await job_ids(store) == []
    # The connection goes on: the next transaction commits.
    assert await store.transact(queue("next"))
    assert await job_ids(store) == ["next"]


async def test_a_lost_lease_answered_late_undoes_the_unit(store: PostgresStore) -> None:
    assert await store.transact(queue("taken"))
    await take_over(store, "taken")

    def finish_taken(tx: PostgresTx) -> str:
        assert tx.holds_job("taken", "r1")
        tx.delete_job("taken")  # written only if still held here: answered later
        tx.put_cell("c", 1, None, 2**50)  # nor is this write's answer waited for
        return "recorded"

    results = await together(store, queue("first"), finish_taken, writes)
    assert results[0] is True
    assert isinstance(results[1], LeaseLostError)
    assert isinstance(results[2], UnitUndoneError)
    assert await job_ids(store) == ["first", "taken"]
    assert await store.transact(lambda tx: (tx.get_cell("c", 0), tx.get_cell("written", 0))) == (
        None,
        None,
    )
    assert not store.holds("taken")

    # Answered during the unit (a later statement of its own waited): it alone is undone.
    def finish_taken_then_read(tx: PostgresTx) -> bool:
        assert tx.holds_job("taken", "r1")
        tx.delete_job("taken")
        return tx.enqueue(job("follow-up"))

    results = await together(store, finish_taken_then_read, queue("after"))
    assert isinstance(results[0], LeaseLostError)
    assert results[1] is True
    assert await job_ids(store) == ["after", "first", "taken"]


async def test_a_unit_that_never_writes_its_job_checks_its_lease(store: PostgresStore) -> None:
    assert await store.transact(queue("mine"))
    assert await store.transact(queue("theirs"))
    await take_over(store, "theirs")

    def relies_on(job_id: str) -> Any:
        def unit(tx: PostgresTx) -> bool:
            assert tx.holds_job(job_id, "r1")
            return tx.enqueue(job(f"after-{job_id}"))

        return unit

    results = await together(store, relies_on("mine"), relies_on("theirs"))
    assert results[0] is True
    assert isinstance(results[1], LeaseLostError)
    assert await job_ids(store) == ["after-mine", "mine", "theirs"]


async def test_members_recorded_without_waiting_are_checked(store: PostgresStore) -> None:
    def save(step_id: str, *, grouped: bool = True) -> Any:
        def unit(tx: PostgresTx) -> tuple[bool, bool]:
            return tx.save_step(
                "r1", step_id, b"1", seq=1, user_id=step_id, op="StepRun", at=1, grouped=grouped
            )

        return unit

    run = NewRun("r1", "app-fn", "e1", b"[]", None, max_attempts=1, created_at=1)
    await store.transact(lambda tx: tx.create_run(run))
    await store.transact(lambda tx: tx.set_pending("r1", ["s1", "s2", "s3"], None, after_seq=0))
    # s1 reads the pending set; s2 is then recorded outside the group (as nothing does,
    # short of a bug), so when s2's result comes as a member, the set this transaction
    # read says it is pending, yet the step exists: that unit fails, and records nothing.
    units = (save("s1"), save("s2", grouped=False), save("s2"), save("s3"))
    results = await together(store, *units)
    assert results[0] == (True, True)
    assert results[1] == (True, False)
    assert isinstance(results[2], RuntimeError)
    assert "s2 of run r1 was pending, yet recorded before" in str(results[2])
    # Known at the commit: s3, after it in the transaction, is undone with it.
    assert isinstance(results[3], UnitUndoneError)
    state = await store.load_run_state("r1")
    assert state is not None
    assert (state.pending, sorted(step.step_id for step in state.steps)) == (
        {"s2", "s3"},
        ["s1", "s2"],
    )
    # s3 comes again: s2 is still pending, so it is not the last.
    assert await store.transact(save("s3")) == (True, True)


async def test_a_connection_cut_while_idle_fails_no_unit(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "IDLE_CHECK_SECONDS", 0.0)  # every transaction checks first
    assert await store.transact(queue("before"))
    assert store._write is not None
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as admin:
        # As a restart of the database would, while this process writes nothing.
        pid = store._write.conn.info.backend_pid
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert await store.transact(queue("after"))
    assert await job_ids(store) == ["after", "before"]
