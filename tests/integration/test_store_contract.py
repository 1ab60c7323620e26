"""The storage contract (engine/store/contract.py), run against every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import AsyncIterator

import orjson
import pytest

from mainspring.engine.records import (
    Hold,
    HoldKind,
    Job,
    JobKind,
    Pause,
    PauseKind,
    RunStatus,
    StoredEvent,
)
from mainspring.engine.store.backend import open_store
from mainspring.engine.store.contract import NewRun, StepRow, Store, Tx

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
async def store(db_path: pathlib.Path | str) -> AsyncIterator[Store]:
    backend = open_store(db_path, durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def new_run(run_id: str = "r1", key: str | None = "fn:e1") -> NewRun:
    return NewRun(
        run_id=run_id,
        function_id="app-fn",
        event_id="e1",
        events_json=b'[{"name":"go","data":{}}]',
        idempotency_key=key,
        max_attempts=5,
        created_at=1,
    )


def job(job_id: str, run_id: str = "r1", run_at: int = 0) -> Job:
    return Job(id=job_id, run_id=run_id, kind=JobKind.DISCOVER, run_at=run_at)


async def test_events_and_runs_are_idempotent(store: Store) -> None:
    event = StoredEvent("e1", "key", "go", {"a": 1}, 5, 6)
    assert await store.transact(lambda tx: tx.insert_event(event))
    assert not await store.transact(lambda tx: tx.insert_event(event))
    assert await store.get_event("e1") == event
    assert await store.transact(lambda tx: tx.create_run(new_run()))
    # Same idempotency key, another run id: refused.
    assert not await store.transact(lambda tx: tx.create_run(new_run("r2")))
    runs = await store.runs_for_event("e1")
    assert [r.id for r in runs] == ["r1"]
    assert runs[0].status is RunStatus.QUEUED


async def test_a_step_is_recorded_once_and_the_first_result_stands(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))
    first = await store.transact(
        lambda tx: tx.save_step("r1", "s1", b'{"data":1}', seq=1, user_id="s", op="StepRun", at=1)
    )
    again = await store.transact(
        lambda tx: tx.save_step("r1", "s1", b'{"data":2}', seq=2, user_id="s", op="StepRun", at=2)
    )
    assert first == (True, False)
    assert again == (False, False)
    state = await store.load_run_state("r1")
    assert state is not None
    assert [(s.step_id, s.memo) for s in state.steps] == [("s1", b'{"data":1}')]


async def test_pending_set_empties_as_members_are_recorded(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))

    def plan(tx: Tx) -> None:
        tx.set_pending("r1", ["a", "b"], "ck", after_seq=0)

    await store.transact(plan)
    a = await store.transact(
        lambda tx: tx.save_step("r1", "a", b"null", seq=1, user_id="a", op="StepRun", at=1)
    )
    b = await store.transact(
        lambda tx: tx.save_step("r1", "b", b"null", seq=2, user_id="b", op="StepRun", at=1)
    )
    assert a == (True, True)
    assert b == (True, False)
    state = await store.load_run_state("r1")
    assert state is not None
    assert [s.step_id for s in state.steps] == ["a", "b"]
    assert state.pending == set()
    assert state.coalesce_key == "ck"


async def test_jobs_dedupe_by_id_and_can_be_repurposed(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))
    assert await store.transact(lambda tx: tx.enqueue(job("j1", run_at=10)))
    assert not await store.transact(lambda tx: tx.enqueue(job("j1", run_at=20)))
    assert await store.transact(lambda tx: tx.job_exists("j1"))
    follow = Job(id="ignored", run_id="r1", kind=JobKind.PLAN, run_at=30, step_id="s9")
    await store.transact(lambda tx: tx.repurpose_job("j1", follow))
    [loaded] = await store.load_jobs()
    assert (loaded.id, loaded.kind, loaded.step_id, loaded.run_at) == ("j1", JobKind.PLAN, "s9", 30)
    await store.transact(lambda tx: tx.reschedule_job("j1", run_at=50, attempt=2))
    [loaded] = await store.load_jobs()
    assert (loaded.run_at, loaded.attempt) == (50, 2)
    await store.transact(lambda tx: tx.delete_job("j1"))
    assert await store.load_jobs() == []


async def test_finishing_a_run_is_final_and_clears_its_jobs(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))
    await store.transact(lambda tx: tx.enqueue(job("j1")))
    await store.transact(lambda tx: tx.set_pending("r1", ["a"], "ck", after_seq=0))
    done = await store.transact(
        lambda tx: tx.finish_run("r1", RunStatus.COMPLETED, output=b"42", error=None, at=9)
    )
    again = await store.transact(
        lambda tx: tx.finish_run("r1", RunStatus.FAILED, output=None, error=b"{}", at=10)
    )
    assert (done, again) == (True, False)
    run = await store.get_run("r1")
    assert run is not None
    assert (run.status, run.output, run.ended_at) == (RunStatus.COMPLETED, 42, 9)
    assert await store.load_jobs() == []
    state = await store.load_run_state("r1")
    assert state is not None
    assert state.pending == set()


async def test_a_run_starts_with_its_first_job_or_not_at_all(store: Store) -> None:
    soon, later = job("j1"), job("j2", run_at=2**50)  # one due now, one far ahead
    assert await store.transact(lambda tx: tx.start_run(new_run(), soon))
    # The same idempotency key: neither the run nor its job is written.
    assert not await store.transact(lambda tx: tx.start_run(new_run("r2"), job("j3", "r2")))
    assert await store.transact(lambda tx: tx.start_run(new_run("r3", key=None), later))
    assert sorted(j.id for j in await store.load_jobs()) == ["j1", "j2"]
    assert await store.get_run("r2") is None
    assert [r.id for r in await store.runs_for_event("e1")] == ["r1", "r3"]


async def test_a_failing_unit_is_undone_alone(store: Store) -> None:
    def good(tx: Tx) -> bool:
        return tx.enqueue(job("good"))

    def bad(tx: Tx) -> bool:
        tx.enqueue(job("bad"))
        raise RuntimeError("this unit fails")

    # Submitted together, so they share one transaction.
    results = await asyncio.gather(
        store.transact(good), store.transact(bad), return_exceptions=True
    )
    assert results[0] is True
    assert isinstance(results[1], RuntimeError)
    assert [j.id for j in await store.load_jobs()] == ["good"]


async def test_flow_cells_expire_and_are_purged(store: Store) -> None:
    await store.transact(lambda tx: tx.put_cell("rate:f:", 100, "r1", 100))
    assert await store.transact(lambda tx: tx.get_cell("rate:f:", 99)) == (100, "r1")
    assert await store.transact(lambda tx: tx.get_cell("rate:f:", 100)) is None
    await store.transact(lambda tx: tx.put_cell("rate:f:", 300, "r2", 300))
    assert await store.transact(lambda tx: tx.get_cell("rate:f:", 200)) == (300, "r2")
    assert await store.transact(lambda tx: tx.purge_cells(299)) == 0
    assert await store.transact(lambda tx: tx.purge_cells(300)) == 1


async def test_holds_are_closed_by_their_run_and_released_when_it_finishes(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))
    hold = Hold(HoldKind.DEBOUNCE, "f:k", "r1", since=5)
    await store.transact(lambda tx: tx.put_hold(hold))
    assert await store.transact(lambda tx: tx.get_hold(HoldKind.DEBOUNCE, "f:k")) == hold
    assert await store.transact(lambda tx: tx.get_hold(HoldKind.BATCH, "f:k")) is None
    assert await store.holds_for_run("r1") == [hold]
    assert not await store.transact(lambda tx: tx.close_hold(HoldKind.BATCH, "r1"))
    assert await store.transact(lambda tx: tx.close_hold(HoldKind.DEBOUNCE, "r1"))
    assert await store.holds_for_run("r1") == []
    singleton = Hold(HoldKind.SINGLETON, "f:", "r1", since=6)
    await store.transact(lambda tx: tx.put_hold(singleton))
    await store.transact(
        lambda tx: tx.finish_run("r1", RunStatus.COMPLETED, output=b"1", error=None, at=9)
    )
    assert await store.transact(lambda tx: tx.get_hold(HoldKind.SINGLETON, "f:")) is None


async def test_a_batch_run_takes_events_and_lists_under_each(store: Store) -> None:
    first = StoredEvent("e1", "k1", "go", {}, 1, 1)
    second = StoredEvent("e2", "k2", "go", {}, 2, 2)
    await store.transact(lambda tx: [tx.insert_event(e) for e in (first, second)])
    await store.transact(lambda tx: tx.create_run(new_run(key="fn:batch:r1")))
    await store.transact(lambda tx: tx.put_hold(Hold(HoldKind.BATCH, "f:", "r1", since=1)))
    assert await store.transact(lambda tx: tx.add_run_event("f:k1", "e1", "r1"))
    assert await store.transact(lambda tx: tx.add_run_event("f:k2", "e2", "r1"))
    assert not await store.transact(lambda tx: tx.add_run_event("f:k2", "e2", "r1"))
    size = await store.transact(lambda tx: tx.append_run_event("r1", second.wire_json(), "f:"))
    assert size == 2
    state = await store.load_run_state("r1")
    assert state is not None
    assert [e["name"] for e in orjson.loads(state.events_json)] == ["go", "go"]
    assert [r.id for r in await store.runs_for_event("e2")] == ["r1"]
    assert [r.id for r in await store.runs_for_event("e1")] == ["r1"]


async def test_started_runs_and_admission(store: Store) -> None:
    gated = dataclasses.replace(new_run("r2", "fn:e2"), admitted=False)
    await store.transact(lambda tx: tx.create_run(new_run()))
    await store.transact(lambda tx: tx.create_run(gated))
    assert [s.admitted_at for s in [await store.load_run_state(r) for r in ("r1", "r2")] if s] == [
        1,
        None,
    ]
    await store.transact(lambda tx: tx.update_run("r2", admitted_at=7, started_at=8))
    assert await store.started_runs(["app-fn"]) == [("r2", "app-fn", gated.events_json)]
    assert await store.started_runs([]) == []


def pause(pause_id: str = "r1:s1", *, expires_at: int = 100) -> Pause:
    return Pause(
        id=pause_id,
        run_id="r1",
        step_id=pause_id.partition(":")[2],
        kind=PauseKind.WAIT,
        event_name="approved",
        expression=None,
        match_path=None,
        match_value=None,
        expires_at=expires_at,
        data={"timeout_job": "t1"},
        created_at=1,
    )


async def test_a_pause_is_claimed_once(store: Store) -> None:
    """Claiming consumes the pause: of two claims (an event and the timeout, two events),
    in one unit or in two, exactly one gets it, and no later event finds it."""
    await store.transact(lambda tx: tx.create_run(new_run()))
    assert await store.transact(lambda tx: tx.create_pause(pause()))
    assert not await store.transact(lambda tx: tx.create_pause(pause()))  # one per step
    event = {"name": "approved", "data": {}}
    [found] = await store.transact(lambda tx: tx.pauses_for_event("approved", event, 50))
    assert found == pause()
    # Past its expiry no event matches it (the timeout job may still claim it).
    assert await store.transact(lambda tx: tx.pauses_for_event("approved", event, 100)) == []
    claimed = await store.transact(lambda tx: [tx.claim_pause("r1:s1"), tx.claim_pause("r1:s1")])
    assert claimed == [pause(), None]
    assert await store.transact(lambda tx: tx.claim_pause("r1:s1")) is None
    assert await store.transact(lambda tx: tx.pauses_for_event("approved", event, 50)) == []
    # Two units racing, submitted together: the first wins.
    await store.transact(lambda tx: tx.create_pause(pause("r1:s2")))
    first, second = await asyncio.gather(
        store.transact(lambda tx: tx.claim_pause("r1:s2")),
        store.transact(lambda tx: tx.claim_pause("r1:s2")),
    )
    assert (first, second) == (pause("r1:s2"), None)


async def test_a_chain_of_steps_is_saved_in_order_and_once(store: Store) -> None:
    await store.transact(lambda tx: tx.create_run(new_run()))
    rows = [
        StepRow(f"s{i}", f'{{"data":{i}}}'.encode(), i + 1, f"u{i}", "StepRun", i, i + 1)
        for i in range(3)
    ]
    first = await store.transact(lambda tx: tx.save_steps("r1", rows, attempt=0, app_version="v1"))
    # Again, with another memo for s1 and a new s3: only s3 is new; s1 keeps its first memo.
    again_rows = [
        StepRow("s1", b'{"data":"other"}', 4, "u1", "StepRun", 5, 6),
        StepRow("s3", b'{"data":3}', 5, "u3", "StepRun", 6, 7),
    ]
    again = await store.transact(
        lambda tx: tx.save_steps("r1", again_rows, attempt=1, app_version=None)
    )
    assert first == {"s0", "s1", "s2"}
    assert again == {"s3"}
    state = await store.load_run_state("r1")
    assert state is not None
    assert [(s.step_id, s.memo, s.app_version) for s in state.steps] == [
        ("s0", b'{"data":0}', "v1"),
        ("s1", b'{"data":1}', "v1"),
        ("s2", b'{"data":2}', "v1"),
        ("s3", b'{"data":3}', None),
    ]
    history = await store.history("r1")
    assert [(h.user_id, h.started_at, h.ended_at) for h in history][:2] == [
        ("u0", 0, 1),
        ("u1", 1, 2),
    ]
