"""What only the PostgreSQL backend has: its database's lock, its health, its connection.

The scenarios that run on both backends are in the suites marked
``pytest.mark.backends("sqlite", "postgres")``; these run on PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

import mainspring as inngest
from mainspring.server.app import create_app
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
