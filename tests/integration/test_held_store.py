"""The store's part in held runs (``engine/held.py``; contract in
``engine/store/contract.py``): a hold is recorded once, a release moves exactly the jobs
held at the deadline, a finished run leaves no hold, and each function's last app is kept."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from mainspring.engine.records import HeldRun, Job, JobKind, RunStatus
from mainspring.engine.store.contract import NewRun, Store, Tx
from mainspring.engine.store.sqlite import SQLiteStore

UNTIL = 1_000


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    backend: Store = SQLiteStore(tmp_path / "held.db", durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def held_run_with_jobs(store: Store) -> None:
    """Run r1 held until UNTIL: two call jobs at the deadline, a sleep and a later retry."""

    def unit(tx: Tx) -> None:
        tx.create_run(NewRun("r1", "app-fn", "e1", b"[{}]", None, 3, 1))
        for job in (
            Job("held-1", "r1", JobKind.DISCOVER, UNTIL),
            Job("held-2", "r1", JobKind.PLAN, UNTIL, step_id="s"),
            Job("nap", "r1", JobKind.SLEEP, UNTIL),
            Job("retry", "r1", JobKind.PLAN, UNTIL + 5, step_id="t"),
        ):
            tx.enqueue(job)
        tx.hold_run(HeldRun("r1", "app-fn", "app", since=10, until=UNTIL))

    await store.transact(unit)


async def test_a_hold_is_recorded_once_and_keeps_its_deadline(store: Store) -> None:
    await held_run_with_jobs(store)
    again = HeldRun("r1", "app-fn", "other", since=500, until=UNTIL + 500)
    kept = await store.transact(lambda tx: tx.hold_run(again))
    assert kept == HeldRun("r1", "app-fn", "app", since=10, until=UNTIL)
    assert await store.held_runs() == [kept]


async def test_a_release_moves_the_held_call_jobs_but_the_one_running(store: Store) -> None:
    await held_run_with_jobs(store)
    moved = await store.transact(lambda tx: tx.release_held("r1", UNTIL, 50, keep="held-2"))
    assert [(job.id, job.run_at) for job in moved] == [("held-1", 50)]
    assert await store.held_runs() == []
    due = {job.id: job.run_at for job in await store.jobs_for_run("r1")}
    # The sleep is not a call, the retry is not held, and held-2 is the job running now.
    assert due == {"held-1": 50, "held-2": UNTIL, "nap": UNTIL, "retry": UNTIL + 5}


async def test_a_finished_run_leaves_no_hold(store: Store) -> None:
    await held_run_with_jobs(store)
    finished = await store.transact(
        lambda tx: tx.finish_run("r1", RunStatus.CANCELLED, output=None, error=None, at=20)
    )
    assert finished
    assert await store.held_runs() == []
    assert await store.jobs_for_run("r1") == []


async def test_the_last_app_of_each_function_is_kept(store: Store) -> None:
    await store.transact(lambda tx: tx.set_function_apps("a", ["a-f", "a-g"], at=1))
    await store.transact(lambda tx: tx.set_function_apps("b", ["a-g"], at=2))
    await store.transact(lambda tx: tx.set_function_apps("a", ["a-h"], at=3))  # f dropped
    found = await store.transact(
        lambda tx: [tx.function_app(f) for f in ("a-f", "a-g", "a-h", "a-x")]
    )
    assert found == ["a", "b", "a", None]
