"""Invariants of the engine that a feature test passes without checking: each test here
fails if the guard it names is taken out (see docs/mutation-report.md).

- a planned step whose result is recorded is dropped, never called again;
- an event matches only the pauses that existed before it: a run's own triggering event
  does not cancel it;
- a pause is consumed once: an event and the wait's timeout (or two events) race, one wins;
- a run waiting only on timers and pauses holds no memory;
- ``durability`` sets SQLite's ``synchronous`` for real;
- each invoke is resumed by its own child, and a failed child's error is the step's;
- in race mode, a branch goes on as soon as its sleep, wait or invoke ends.
"""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

import mainspring as inngest
from mainspring.engine.records import Job, JobKind
from mainspring.engine.store.postgres.store import PostgresStore
from mainspring.engine.store.sqlite import PAGE_SIZE, WAL_CHECKPOINT_BYTES, SQLiteStore
from mainspring.engine.store.sqlite_tx import SQLiteTx
from mainspring.protocol.step_ids import hash_step_id
from tests.conftest import EngineFactory, log_calls, peek, run_to_end, wait_for_job, wait_for_pauses
from tests.postgres_support import TEMPLATES

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def until(check: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def count(engine: inngest.Engine, sql: str, *args: object) -> int:
    """A test-only peek at the store."""
    [(found,)] = peek(engine, sql, *args)
    return int(found)


# -- a recorded step never runs again ---------------------------------------------------------


async def test_a_planned_step_whose_result_is_recorded_is_dropped(
    make_engine: EngineFactory,
) -> None:
    """A plan job that comes due after its step was recorded (a race-mode re-plan, a retry
    that raced its result) is deleted without calling the function."""
    client = inngest.Client(app_id="replan")
    ran: list[str] = []

    def a() -> str:
        ran.append("a")
        return "A"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        first = await ctx.step.run("a", a)
        reply = await ctx.step.wait_for_event("w", event="go/on", timeout=60_000)
        return [first, None if reply is None else reply.name]

    async with make_engine(client, [fn]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
        log = log_calls(engine)
        step_id = hash_step_id("a")
        late = Job(
            id=f"{fn.id}:{run.id}-{step_id}-plan",
            run_id=run.id,
            kind=JobKind.PLAN,
            run_at=engine.clock.now_ms(),
            step_id=step_id,
            data={"mode": "race", "user_id": "a"},
        )
        assert await engine._store.transact(lambda tx: tx.enqueue(late))
        engine._queue.push(late)
        await until(
            lambda: not count(engine, "SELECT count(*) FROM jobs WHERE job_id = ?", late.id),
            "the stale plan job to go",
        )
        await asyncio.sleep(0.05)  # time for a call to show, were one made
        assert log.calls == []  # the function was not called for a recorded step
        await engine.send(inngest.Event(name="go/on"))
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.output == ["A", "go/on"]
    assert ran == ["a"]
    assert [(h.user_id, h.op) for h in history] == [("a", "StepRun"), ("w", "WaitForEvent")]


# -- pauses: only those older than the event match, each consumed once ------------------------


async def test_a_runs_own_trigger_does_not_cancel_it(make_engine: EngineFactory) -> None:
    """ "Latest wins": each save of a document cancels the run of the previous save. The
    event that starts a run arms its cancel condition, and must not match it."""
    client = inngest.Client(app_id="latest")
    clock = inngest.ManualClock()
    indexed: list[int] = []

    def index(n: int) -> int:
        indexed.append(n)
        return n

    @client.create_function(
        fn_id="index",
        trigger=inngest.TriggerEvent(event="doc/saved"),
        cancel=[inngest.Cancel(event="doc/saved", if_exp="event.data.doc == async.data.doc")],
    )
    async def fn(ctx: inngest.Context) -> int:
        n = await ctx.step.run("index", index, ctx.event.data["n"])
        await ctx.step.sleep("settle", 60_000)
        return n

    async def save(engine: inngest.Engine, doc: str, n: int) -> str:
        [event_id] = await engine.send(inngest.Event(name="doc/saved", data={"doc": doc, "n": n}))
        [run] = await engine.runs(event_id)
        return run.id

    async with make_engine(client, [fn], clock=clock) as engine:
        first = await save(engine, "d1", 1)
        other = await save(engine, "d2", 2)
        await wait_for_job(engine, first, "sleep")  # not cancelled by its own event
        await wait_for_job(engine, other, "sleep")
        assert (await engine.run(first)).status == "Running"
        second = await save(engine, "d1", 3)  # cancels the first run of d1 only
        cancelled = await engine.wait(first, timeout=5)
        await wait_for_job(engine, second, "sleep")
        clock.advance(61)
        done = [await engine.wait(run_id, timeout=5) for run_id in (second, other)]
    assert cancelled.status == "Cancelled"
    assert [(d.status, d.output) for d in done] == [("Completed", 3), ("Completed", 2)]
    assert sorted(indexed) == [1, 2, 3]


def approval(client: inngest.Client) -> inngest.Function[object]:
    @client.create_function(fn_id="approve", trigger=inngest.TriggerEvent(event="order/created"))
    async def approve(ctx: inngest.Context) -> object:
        reply = await ctx.step.wait_for_event(
            "reply",
            event="order/approved",
            if_exp="event.data.id == async.data.id",
            timeout=60_000,
        )
        return None if reply is None else dict(reply.data)

    return approve


async def start_waiting(engine: inngest.Engine, order: str) -> str:
    [event_id] = await engine.send(inngest.Event(name="order/created", data={"id": order}))
    [run] = await engine.runs(event_id)
    await wait_for_pauses(engine, run.id)
    return run.id


async def test_an_event_and_the_timeout_race_for_one_wait_and_one_wins(
    make_engine: EngineFactory,
) -> None:
    """The event arrives just before the timeout, which comes due while the event's unit
    commits: the event consumes the pause, and the timeout job, taken off the queue before
    the event's resume job was queued and run first, finds nothing to claim."""
    client = inngest.Client(app_id="race")
    clock = inngest.ManualClock()
    async with make_engine(client, [approval(client)], clock=clock) as engine:
        run_id = await start_waiting(engine, "o-1")
        clock.advance(59.5)
        event = inngest.Event(name="order/approved", data={"id": "o-1", "n": 1})
        sending = asyncio.create_task(engine.send(event))
        await asyncio.sleep(0)  # the intake read the time (the wait is open) and queued its unit
        clock.advance(0.5)  # the timeout is due now
        await sending
        assert count(engine, "SELECT count(*) FROM pauses WHERE run_id = ?", run_id) == 0
        done = await engine.wait(run_id, timeout=5)
        await asyncio.sleep(0.05)  # the timeout job has had its turn
        history = await engine.history(run_id)
    assert done.status == "Completed", done.error
    assert done.output == {"id": "o-1", "n": 1}
    [entry] = history
    assert (entry.user_id, entry.op, entry.output["data"]) == (
        "reply",
        "WaitForEvent",
        {"id": "o-1", "n": 1},
    )


async def test_two_events_for_one_wait_the_first_wins_and_the_pause_is_gone(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="race")
    async with make_engine(client, [approval(client)]) as engine:
        run_id = await start_waiting(engine, "o-2")
        await engine.send(
            [inngest.Event(name="order/approved", data={"id": "o-2", "n": n}) for n in range(1, 3)]
        )
        # Consumed in the unit that recorded the events: nothing left for a later one.
        assert count(engine, "SELECT count(*) FROM pauses WHERE run_id = ?", run_id) == 0
        done = await engine.wait(run_id, timeout=5)
        await engine.send(inngest.Event(name="order/approved", data={"id": "o-2", "n": 3}))
        await asyncio.sleep(0.05)
        history = await engine.history(run_id)
        jobs = count(engine, "SELECT count(*) FROM jobs WHERE run_id = ?", run_id)
    assert done.status == "Completed", done.error
    assert done.output == {"id": "o-2", "n": 1}
    assert [h.user_id for h in history] == ["reply"]
    assert jobs == 0


# -- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parked_on", ["sleep", "wait"])
async def test_a_run_waiting_on_a_timer_or_a_pause_holds_no_memory(
    make_engine: EngineFactory, transport_kind: str, parked_on: str
) -> None:
    """The README's "a sleeping run holds no memory": once only timers and pauses remain,
    the executor's cached state and the suspended function are dropped; the run replays
    from the store when the timer fires, and no recorded step runs again."""
    client = inngest.Client(app_id="parked")
    clock = inngest.ManualClock()
    ran: list[str] = []

    def step(name: str) -> str:
        ran.append(name)
        return name

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[str]:
        before = await ctx.step.run("before", step, "before")
        if parked_on == "sleep":
            await ctx.step.sleep("nap", 3_600_000)
        else:
            await ctx.step.wait_for_event("hear", event="never", timeout=3_600_000)
        return [before, await ctx.step.run("after", step, "after")]

    async with make_engine(client, [fn], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep" if parked_on == "sleep" else "pause-timeout")
        await until(lambda: engine._executor.active(run.id) is None, "the run to be evicted")
        if transport_kind == "inprocess":
            assert len(engine._transport.default._live) == 0  # type: ignore[attr-defined]
        parked_at = clock.now_ms()
        clock.advance(3_601)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.output == ["before", "after"]
    assert ran == ["before", "after"]
    op = "Sleep" if parked_on == "sleep" else "WaitForEvent"
    name = "nap" if parked_on == "sleep" else "hear"
    assert [(h.user_id, h.op) for h in history] == [
        ("before", "StepRun"),
        (name, op),
        ("after", "StepRun"),
    ]
    # The engine's step spans the time it waited, and ended when its timer fired.
    assert (history[1].started_at, history[1].ended_at) == (parked_at, parked_at + 3_601_000)
    assert history[1].output is None


# -- durability ------------------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
async def test_durability_sets_sqlite_synchronous(
    tmp_path: pathlib.Path, durability: Any, synchronous: int
) -> None:
    """``full`` fsyncs every commit (``synchronous=FULL``, 2); ``normal`` only survives a
    crash of the process (``NORMAL``, 1). Checked on the connection that commits."""
    store = SQLiteStore(tmp_path / "sync.db", durability=durability)
    await store.open()
    try:
        read_back = await store.transact(
            lambda tx: tx._db.execute("PRAGMA synchronous").fetchone()[0]
        )
    finally:
        await store.close()
    assert read_back == synchronous


async def test_a_new_database_has_small_pages_and_an_old_one_keeps_its_own(
    tmp_path: pathlib.Path,
) -> None:
    """A new file gets ``PAGE_SIZE`` pages (fewer bytes per commit); a file written before
    keeps its 4096-byte pages, and its rows, and takes new writes. Either checkpoints its
    WAL every ``WAL_CHECKPOINT_BYTES``, however many pages that is."""
    old_path = tmp_path / "old.db"
    old = sqlite3.connect(old_path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE kept (n INTEGER)")
    old.execute("INSERT INTO kept VALUES (7)")
    old.commit()
    old.close()
    sizes = {}
    checkpoints = {}
    for name, path in (("new", tmp_path / "new.db"), ("old", old_path)):
        store = SQLiteStore(path)
        await store.open()
        try:
            sizes[name] = await store.transact(
                lambda tx: tx._db.execute("PRAGMA page_size").fetchone()[0]
            )
            checkpoints[name] = await store.transact(
                lambda tx: tx._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            )
            await store.transact(lambda tx: tx.save_app("app", b"{}", at=1))
        finally:
            await store.close()
    assert sizes == {"new": PAGE_SIZE, "old": 4096}
    assert checkpoints == {name: WAL_CHECKPOINT_BYTES // size for name, size in sizes.items()}
    assert PAGE_SIZE < 4096
    check = sqlite3.connect(old_path)
    assert check.execute("SELECT n FROM kept").fetchall() == [(7,)]
    assert check.execute("SELECT count(*) FROM apps").fetchone()[0] == 1
    check.close()


async def test_an_engine_is_fully_durable_by_default(tmp_path: pathlib.Path) -> None:
    client = inngest.Client(app_id="durable")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> None:
        return None

    async with inngest.Engine(client, [fn], database=tmp_path / "default.db") as engine:
        read_back = await engine._store.transact(
            lambda tx: cast(SQLiteTx, tx)._db.execute("PRAGMA synchronous").fetchone()[0]
        )
    assert read_back == 2


async def test_a_postgres_engine_is_fully_durable_by_default() -> None:
    client = inngest.Client(app_id="durable")
    with TEMPLATES.clone() as url:
        async with inngest.Engine(client, [], database=url) as engine:
            store = cast(PostgresStore, engine._store)
            assert store._write is not None
            row = store._write.conn.execute("SHOW synchronous_commit").fetchone()
    assert row == ("on",)


# -- invokes ---------------------------------------------------------------------------------


async def test_each_invoke_is_resumed_by_its_own_child_only(make_engine: EngineFactory) -> None:
    """Two invokes in flight at once, children finishing in the opposite order: each
    pause matches its own child's ``function.finished`` (by correlation id), and the child
    is told who invoked it and until when."""
    client = inngest.Client(app_id="pair")
    gates = {"slow": asyncio.Event(), "fast": asyncio.Event()}
    seen: dict[str, dict[str, Any]] = {}

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never/sent"))
    async def child(ctx: inngest.Context) -> str:
        which = str(ctx.event.data["which"])
        seen[which] = dict(ctx.event.data["_inngest"])
        await ctx.step.run("hold", gates[which].wait)
        return which

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> list[str]:
        def call(which: str) -> Callable[[], Any]:
            return lambda: ctx.step.invoke(
                f"call-{which}", function=child, data={"which": which}, timeout=60_000
            )

        return list(await ctx.group.parallel((call("slow"), call("fast"))))

    async with make_engine(client, [child, parent]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await until(lambda: len(seen) == 2, "both children to start")
        gates["fast"].set()
        await until(
            lambda: count(engine, "SELECT count(*) FROM steps WHERE run_id = ?", run.id) >= 1,
            "the fast child's result",
        )
        await asyncio.sleep(0.05)
        assert (await engine.run(run.id)).status == "Running"  # still waiting on "slow"
        gates["slow"].set()
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == ["slow", "fast"]
    for which in ("slow", "fast"):
        meta = seen[which]
        assert meta["fn_id"] == "pair-child"
        assert meta["source_fn_id"] == "pair-parent"
        assert meta["source_run_id"] == run.id
        assert meta["name"] == f"call-{which}"
        assert meta["correlation_id"] == f"{run.id}.{hash_step_id(f'call-{which}')}"
        assert abs(meta["expire"] - (done.created_at + 60_000)) < 5_000


@pytest.mark.parametrize("first", ["sleep", "wait", "invoke"])
async def test_in_race_mode_a_branch_goes_on_when_its_engine_step_ends(
    make_engine: EngineFactory, first: str
) -> None:
    """A branch's sleep, wait or invoke ends while the other branch's step still runs: in
    race mode the function is called again at once (the group's mode travels with the
    engine's job), so the branch's next step runs before the other step ends."""
    client = inngest.Client(app_id="race-engine")
    gate = asyncio.Event()
    ran: list[str] = []

    def note(name: str) -> str:
        ran.append(name)
        return name

    async def slow() -> str:
        ran.append("b1")
        await gate.wait()
        return "b1"

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never/sent"))
    async def child(ctx: inngest.Context) -> str:
        return "child"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        async def branch_a() -> str:
            if first == "sleep":
                await ctx.step.sleep("first", 10)
            elif first == "wait":
                await ctx.step.wait_for_event("first", event="go/on", timeout=60_000)
            else:
                await ctx.step.invoke("first", function=child, timeout=60_000)
            return await ctx.step.run("a2", note, "a2")

        async def branch_b() -> str:
            return await ctx.step.run("b1", slow)

        result = await ctx.group.parallel(
            (branch_a, branch_b), parallel_mode=inngest.ParallelMode.RACE
        )
        return list(result)

    async with make_engine(client, [child, fn]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        if first == "wait":
            await until(lambda: "b1" in ran, "b1 to start")
            await wait_for_pauses(engine, run.id)
            await engine.send(inngest.Event(name="go/on"))
        await until(lambda: "a2" in ran, "a2 to run while b1 still runs", timeout=5)
        gate.set()
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.output == ["a2", "b1"]
    op = {"sleep": "Sleep", "wait": "WaitForEvent", "invoke": "InvokeFunction"}[first]
    assert [(h.user_id, h.op) for h in history] == [
        ("first", op),
        ("a2", "StepRun"),
        ("b1", "StepRun"),
    ]


async def test_a_wait_condition_the_index_cannot_take_is_evaluated(
    make_engine: EngineFactory,
) -> None:
    """``async.data.n > 1`` is no equality: the pause is filed under its event name only,
    and each candidate event is checked against the condition."""
    client = inngest.Client(app_id="cond")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        got = await ctx.step.wait_for_event(
            "big", event="n", if_exp="async.data.n > event.data.floor", timeout=60_000
        )
        return None if got is None else got.data["n"]

    async with make_engine(client, [fn]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go", data={"floor": 1}))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
        await engine.send([inngest.Event(name="n", data={"n": n}) for n in (0, 1)])
        await asyncio.sleep(0.05)
        assert (await engine.run(run.id)).status == "Running"
        await engine.send([inngest.Event(name="n", data={"n": n}) for n in (5, 7)])
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == 5


async def test_a_failed_childs_error_is_the_invoke_steps_error(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="inv-err")

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never/sent"))
    async def child(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("child refused")

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> str:
        try:
            await ctx.step.invoke("call", function=child, timeout=60_000)
        except inngest.StepError as err:
            return err.name
        return "no error"

    async with make_engine(client, [child, parent]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        [child_run] = await engine.list_runs(function_id="inv-err-child")
        [step] = await engine.history(run.id)
    assert run.output == "NonRetriableError"
    assert child_run.error is not None
    assert (step.user_id, step.op) == ("call", "InvokeFunction")
    # The child's run error as its inngest/function.finished event carries it.
    assert step.error == {"error": child_run.error["message"], **child_run.error}


# -- retries ---------------------------------------------------------------------------------


async def test_a_failed_attempt_is_retried_after_exactly_its_backoff(
    make_engine: EngineFactory,
) -> None:
    """``retry_backoff=[5, 7]``: the first retry waits 5 s, the second 7 s (the schedule
    is indexed by the attempt that failed), each to the millisecond."""
    client = inngest.Client(app_id="backoff")
    clock = inngest.ManualClock()
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ValueError(f"try {len(tries)}")
        return "ok"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
    async def fn(ctx: inngest.Context) -> str:
        return await ctx.step.run("flaky", flaky)

    def job_of(engine: inngest.Engine, run_id: str) -> tuple[int, int] | None:
        rows = peek(engine, "SELECT run_at, attempt FROM jobs WHERE run_id = ?", run_id)
        return None if not rows else (int(rows[0][0]), int(rows[0][1]))

    async with make_engine(client, [fn], clock=clock, retry_backoff=[5, 7]) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        for attempt, delay in ((1, 5), (2, 7)):

            def scheduled(attempt: int = attempt) -> bool:
                return (job_of(engine, run.id) or (0, 0))[1] == attempt

            await until(scheduled, f"attempt {attempt} to be scheduled")
            assert job_of(engine, run.id) == (clock.now_ms() + delay * 1000, attempt)
            clock.advance(delay)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == "ok"
    assert len(tries) == 3
