"""What only the PostgreSQL backend has: its database's lock, its health, its connection.

The scenarios that run on both backends are in the suites marked
``pytest.mark.backends("sqlite", "postgres")``; these run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

import mainspring as inngest
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
