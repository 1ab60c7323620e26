"""What only the PostgreSQL backend has: its database's lock, its health, its connection.

The scenarios that run on both backends are in the suites marked
``pytest.mark.backends("sqlite", "postgres")``; these run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

import mainspring as inngest
from mainspring.server.app import create_app
from tests.conftest import wait_for_step
from tests.postgres_support import TEMPLATES, admin_url


@pytest.fixture
def database() -> Iterator[str]:
    with TEMPLATES.clone() as url:
        yield url


async def test_a_second_engine_process_on_one_database_is_refused(database: str) -> None:
    async with inngest.Engine(inngest.Client(app_id="one"), [], database=database):
        second = inngest.Engine(inngest.Client(app_id="two"), [], database=database)
        with pytest.raises(RuntimeError, match="in use by another mainspring engine"):
            await second.start()
    # The first one gone, its lock went with its connection.
    async with inngest.Engine(inngest.Client(app_id="three"), [], database=database):
        pass


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
