"""What only the PostgreSQL backend has: its database's lock, its health, its connection.

The scenarios that run on both backends are in the suites marked
``pytest.mark.backends("sqlite", "postgres")``; these run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

import mainspring as inngest
from mainspring.engine.store.postgres.migrate import MigrationError
from mainspring.server.app import create_app
from tests.conftest import peek, wait_for_job, wait_for_step
from tests.postgres_support import TEMPLATES, admin_url


@pytest.fixture
def database() -> Iterator[str]:
    with TEMPLATES.clone() as url:
        yield url


def _napper(client: inngest.Client) -> inngest.Function[str]:
    @client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="nap"))
    async def nap(ctx: inngest.Context) -> str:
        await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
        return await ctx.step.run("after", lambda: f"woke in {os.getpid()}")

    return nap


async def test_a_stopped_engine_hands_its_jobs_to_another_at_once(database: str) -> None:
    first_client, second_client = inngest.Client(app_id="a"), inngest.Client(app_id="a")
    first = inngest.Engine(first_client, [_napper(first_client)], database=database)
    second = inngest.Engine(second_client, [_napper(second_client)], database=database)
    async with second:
        await first.start()
        [event_id] = await first.send(inngest.Event(name="nap"))
        [run] = await first.runs(event_id)
        await wait_for_job(first, run.id, "sleep")  # the first engine holds the sleep
        await first.stop()  # gives it back (30 s leases would otherwise keep it)
        started = time.monotonic()
        done = await second.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert time.monotonic() - started < 5


async def test_a_dead_engines_jobs_are_taken_over_when_its_leases_end(database: str) -> None:
    first_client, second_client = inngest.Client(app_id="a"), inngest.Client(app_id="a")
    first = inngest.Engine(
        first_client, [_napper(first_client)], database=database, lease_seconds=1
    )
    second = inngest.Engine(
        second_client, [_napper(second_client)], database=database, lease_seconds=1
    )
    async with second:
        await first.start()
        [event_id] = await first.send(inngest.Event(name="nap"))
        [run] = await first.runs(event_id)
        await wait_for_job(first, run.id, "sleep")
        # Dead: it stops running and renewing without giving anything back.
        await first._dispatcher.stop()
        assert first._claims is not None
        await first._claims.stop(release=False)
        done = await second.wait(run.id, timeout=10)
        [(jobs_left,)] = peek(second, "SELECT count(*) FROM jobs")
        await first.stop()
    assert done.status == "Completed", done.error
    assert jobs_left == 0


async def test_health_says_when_the_database_is_gone(database: str) -> None:
    engine = inngest.Engine(inngest.Client(app_id="h"), [], database=database)
    app = create_app(engine, dev=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            assert (await http.get("/health")).status_code == 200
            # The database dropped under the server: its connections are cut, and new ones
            # are refused.
            name = database.rsplit("/", 1)[1]
            with psycopg.connect(admin_url(), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            answer = await http.get("/health")
    assert answer.status_code == 503
    assert answer.json()["message"].startswith("database unreachable: ")


def _cut_connections(database: str) -> int:
    """Terminate every connection to the database (as a restart of the server would)."""
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchall()
    return len(rows)


@pytest.mark.parametrize("transport_kind", ["inprocess"])
async def test_runs_go_on_after_the_database_cuts_every_connection(
    database: str, make_engine: Any
) -> None:
    client = inngest.Client(app_id="cut")
    gate = asyncio.Event()
    ran: list[str] = []

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[str]:
        async def first() -> str:
            ran.append("first")
            return "a"

        async def second() -> str:
            await gate.wait()
            ran.append("second")
            return "b"

        return [await ctx.step.run("first", first), await ctx.step.run("second", second)]

    async with make_engine(client, [fn], database=database, chain_seconds=0) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_step(engine, run.id, "first")  # recorded
        assert _cut_connections(database) >= 2  # the writer's and the pool's
        gate.set()
        done = await engine.wait(run.id, timeout=15)
        assert done.status == "Completed", done.error
        assert done.output == ["a", "b"]
        # An event sent after the cut is recorded too.
        [again] = await engine.send(inngest.Event(name="go"))
        [rerun] = await engine.runs(again)
        assert (await engine.wait(rerun.id, timeout=15)).status == "Completed"
    assert ran.count("first") == 2  # once per run: the recorded step never ran again


# -- two engines on one database, in one process: what must hold across processes ------------


def _pair(
    database: str, build: Callable[[inngest.Client], list[inngest.Function[Any]]], **options: Any
) -> tuple[inngest.Engine, inngest.Engine]:
    """Two engines of the same app on one database (as two servers would be)."""
    engines = []
    for _ in range(2):
        client = inngest.Client(app_id="pair")
        engines.append(inngest.Engine(client, build(client), database=database, **options))
    return engines[0], engines[1]


async def test_a_cron_tick_fires_once_across_processes(database: str) -> None:
    ticks: list[str] = []

    def build(client: inngest.Client) -> list[inngest.Function[Any]]:
        @client.create_function(fn_id="tick", trigger=inngest.TriggerCron(cron="* * * * *"))
        async def tick(ctx: inngest.Context) -> None:
            ticks.append(str(ctx.event.data["scheduledAt"]))

        return [tick]

    clock = inngest.ManualClock(1_767_225_630_000)  # 00:00:30
    first, second = _pair(database, build, clock=clock)
    async with first, second:
        for minute in range(1, 4):
            clock.advance(60)
            for _ in range(300):
                if len(ticks) >= minute:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # a second firing of the tick would show by now
    assert ticks == ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z", "2026-01-01T00:03:00Z"]


async def test_a_run_cancelled_through_another_process_takes_no_further_step(
    database: str,
) -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    async def first_step() -> str:
        steps.append("one started")
        await gate.wait()
        return "one"

    def build(client: inngest.Client) -> list[inngest.Function[Any]]:
        @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="slow"))
        async def slow(ctx: inngest.Context) -> None:
            await ctx.step.run("one", first_step)
            await ctx.step.run("two", lambda: steps.append("two"))

        return [slow]

    first, second = _pair(database, build, chain_seconds=0)
    async with first, second:
        [event_id] = await first.send(inngest.Event(name="slow"))
        [run] = await first.runs(event_id)
        for _ in range(500):
            if steps:
                break
            await asyncio.sleep(0.01)
        # Cancelled elsewhere while the first engine's call is in flight: when it comes
        # back, that engine must record nothing and call nothing more.
        assert await second.cancel(run.id)
        gate.set()
        done = await first.wait(run.id, timeout=5)
        await asyncio.sleep(0.5)
        history = await first.history(run.id)
    assert done.status == "Cancelled"
    assert steps == ["one started"]
    assert [entry.user_id for entry in history if entry.op == "StepRun"] == []


async def test_event_ids_and_rate_limits_hold_across_processes(database: str) -> None:
    def build(client: inngest.Client) -> list[inngest.Function[Any]]:
        @client.create_function(fn_id="once", trigger=inngest.TriggerEvent(event="once"))
        async def once(ctx: inngest.Context) -> str:
            return "ran"

        @client.create_function(
            fn_id="limited",
            trigger=inngest.TriggerEvent(event="limited"),
            rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=1)),
        )
        async def limited(ctx: inngest.Context) -> str:
            return "ran"

        return [once, limited]

    first, second = _pair(database, build)
    async with first, second:
        # The same event sent to both (a retried send landing elsewhere): one run.
        seed = "1767225630000," + base64.b64encode(b"0123456789").decode()
        [one] = await first.send(inngest.Event(name="once"), id_seed=seed)
        [two] = await second.send(inngest.Event(name="once"), id_seed=seed)
        assert one == two
        assert len(await second.runs(one)) == 1
        # A rate limit of 1 a minute, sent through both: one run, one skipped.
        [a] = await first.send(inngest.Event(name="limited"))
        [b] = await second.send(inngest.Event(name="limited"))
        runs = [*await first.runs(a), *await second.runs(b)]
        done = [await first.wait(run.id, timeout=5) for run in runs]
    assert sorted(run.status.value for run in done) == ["Completed", "Skipped"]


async def test_a_database_at_a_newer_schema_is_refused_at_start(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO mainspring_migrations VALUES (99, 'future', now())")
    engine = inngest.Engine(inngest.Client(app_id="old"), [], database=database)
    with pytest.raises(MigrationError, match="at version 99, newer than this mainspring"):
        await engine.start()


async def test_a_limit_holds_while_the_flow_leader_loses_its_connection(database: str) -> None:
    spans: list[tuple[float, float]] = []

    def build(client: inngest.Client) -> list[inngest.Function[Any]]:
        async def work() -> None:
            began = time.monotonic()
            await asyncio.sleep(0.3)
            spans.append((began, time.monotonic()))

        @client.create_function(
            fn_id="limited",
            trigger=inngest.TriggerEvent(event="limited"),
            concurrency=[inngest.Concurrency(limit=1)],
        )
        async def limited(ctx: inngest.Context) -> None:
            await ctx.step.run("work", work)

        return [limited]

    first, second = _pair(database, build, lease_seconds=2)
    async with first:
        for _ in range(300):
            if first._store.leading:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        async with second:
            ids = await second.send([inngest.Event(name="limited") for _ in range(4)])
            runs = [run for event_id in ids for run in await second.runs(event_id)]
            for _ in range(500):  # until the first call is out
                if first._executor._busy:
                    break
                await asyncio.sleep(0.01)
            # The leader's connection is cut mid-call: it loses the lead's lock, and the
            # other engine takes the lead, but starts nothing while the first holds any.
            writer = first._store._write  # type: ignore[attr-defined]
            with psycopg.connect(admin_url(), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (writer.conn.info.backend_pid,))
            done = [await second.wait(run.id, timeout=20) for run in runs]
    assert [run.status.value for run in done] == ["Completed"] * 4
    spans.sort()
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end, f"two limited calls overlapped: {spans}"


async def test_waiting_on_one_process_for_a_run_another_finishes(database: str) -> None:
    def build(client: inngest.Client) -> list[inngest.Function[Any]]:
        @client.create_function(fn_id="quick", trigger=inngest.TriggerEvent(event="quick"))
        async def quick(ctx: inngest.Context) -> str:
            return await ctx.step.run("only", lambda: "done")

        return [quick]

    first, second = _pair(database, build)
    async with first, second:
        [event_id] = await first.send(inngest.Event(name="quick"))
        [run] = await first.runs(event_id)
        started = time.monotonic()
        # The first engine runs it; the second hears that it finished (NOTIFY), not only
        # when its wait times out.
        done = await second.wait(run.id, timeout=10)
    assert done.status == "Completed"
    assert time.monotonic() - started < 3
