"""Shared fixtures: a temporary database and an engine factory with fast retries.

A module runs its scenarios on PostgreSQL as well as SQLite by saying so:
``pytestmark = pytest.mark.backends("sqlite", "postgres")``. Its tests then take ``db_path``
(a SQLite file's path, or a fresh PostgreSQL database's URL) once per backend.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

import mainspring
from mainspring.sdk.serve.asgi import serve
from tests.postgres_support import TEMPLATES

EngineFactory = Callable[..., AbstractAsyncContextManager[mainspring.Engine]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", marker.args, indirect=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    TEMPLATES.close()


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store backend: ``"sqlite"``, unless the module asks for others (see above)."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture
def db_path(tmp_path: pathlib.Path, store_kind: str) -> Iterator[Any]:
    """The engine's ``database``: a file in a temporary folder, or on PostgreSQL a database
    of the test's own (cloned from a migrated template, dropped afterwards)."""
    if store_kind == "postgres":
        with TEMPLATES.clone() as url:
            yield url
    else:
        yield tmp_path / "engine.db"


#: Signs the calls of the HTTP transport in tests (and is checked by the serve handler).
TEST_SIGNING_KEY = "signkey-test-12ab34cd56ef78901234567890abcdef1234567890abcdef1234567890abcdef"


@pytest.fixture(params=["inprocess", "http"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    """How the engine reaches the functions: in this process, or over (ASGI) HTTP."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_engine(db_path: pathlib.Path, transport_kind: str) -> EngineFactory:
    """``async with make_engine(client, functions, **options) as engine:``.

    Every scenario runs twice: with the in-process transport, and over HTTP through the
    SDK's serve handler (signed calls, real wire encoding, an in-memory ASGI transport).
    Retries wait 10 ms instead of the production schedule, and durability is "normal"
    (still safe against a killed process) to keep the suite fast.
    """

    @asynccontextmanager
    async def factory(
        client: mainspring.Client,
        functions: Sequence[mainspring.Function[Any]],
        **options: Any,
    ) -> AsyncIterator[mainspring.Engine]:
        options.setdefault("database", db_path)
        options.setdefault("retry_backoff", 0.01)
        options.setdefault("durability", "normal")
        if transport_kind == "inprocess":
            async with mainspring.Engine(client, functions, **options) as engine:
                yield engine
            return
        client.settings = dataclasses.replace(
            client.settings, dev=False, signing_key=TEST_SIGNING_KEY
        )
        app = serve(client, functions)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            options.update(
                app_url="http://app/api/inngest", signing_key=TEST_SIGNING_KEY, http=http
            )
            async with mainspring.Engine(client, functions, **options) as engine:
                yield engine

    return factory


async def run_to_end(
    engine: mainspring.Engine, event: mainspring.Event, *, timeout: float = 10.0
) -> mainspring.Run:
    """Send one event that starts exactly one run; wait for that run to finish."""
    [event_id] = await engine.send(event)
    runs = await engine.runs(event_id)
    assert len(runs) == 1, f"expected one run for {event.name}, got {len(runs)}"
    return await engine.wait(runs[0].id, timeout=timeout)


class CallLog:
    """Records every call request the engine makes (target step or discovery)."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []

    @property
    def discoveries(self) -> int:
        return sum(1 for c in self.calls if c is None)

    @property
    def targeted(self) -> int:
        return sum(1 for c in self.calls if c is not None)


def log_calls(engine: mainspring.Engine) -> CallLog:
    """Wrap the engine's transport to count requests (a test-only peek inside)."""
    log = CallLog()
    executor = engine._executor
    inner = executor._transport

    class Counting:
        async def call(self, request: Any) -> Any:
            log.calls.append(request.step_id)
            return await inner.call(request)

        def forget(self, run_id: str) -> None:
            inner.forget(run_id)

        async def close(self) -> None:
            await inner.close()

    executor._transport = Counting()
    return log


async def store_rows(engine: mainspring.Engine, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the engine's store, whichever the backend (a test-only peek).

    Written with ``?`` placeholders; on PostgreSQL they become ``%s``."""
    store: Any = engine._store
    if hasattr(store, "_reader"):
        return list(store._reader().execute(sql, args).fetchall())
    rows: list[tuple[Any, ...]] = await store._rows(sql.replace("?", "%s"), args)
    return rows


def peek(engine: mainspring.Engine, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """:func:`store_rows` from synchronous code (a check polled by a loop)."""
    store: Any = engine._store
    if hasattr(store, "_reader"):
        return list(store._reader().execute(sql, args).fetchall())
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        return list(conn.execute(sql.replace("?", "%s"), args).fetchall())


async def wait_for_pauses(engine: mainspring.Engine, run_id: str, count: int = 1) -> None:
    """Until the run has ``count`` pauses stored (a test-only peek at the store)."""
    import asyncio

    for _ in range(500):
        [(stored,)] = await store_rows(
            engine, "SELECT count(*) FROM pauses WHERE run_id = ?", run_id
        )
        if stored >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never paused")


async def wait_for_job(engine: mainspring.Engine, run_id: str, kind: str) -> None:
    """Until the run has a queued job of this kind (a test-only peek at the store)."""
    import asyncio

    for _ in range(500):
        [(stored,)] = await store_rows(
            engine, "SELECT count(*) FROM jobs WHERE run_id = ? AND kind = ?", run_id, kind
        )
        if stored:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never queued a {kind} job")


async def wait_for_step(engine: mainspring.Engine, run_id: str, user_id: str) -> None:
    """Until the run's history has an entry for the step ``user_id``."""
    import asyncio

    for _ in range(500):
        if any(h.user_id == user_id for h in await engine.history(run_id)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"step {user_id!r} of run {run_id} was never recorded")


async def until_idle(engine: mainspring.Engine, timeout: float = 5.0) -> None:
    """Until no job but cron ticks is left in the store: every run has finished and
    started nothing more. A check that something ran once waits for this, not for the
    first arrival, so that a second arrival has had its chance to show."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        [(queued,)] = await store_rows(engine, "SELECT count(*) FROM jobs WHERE kind != 'cron'")
        if queued == 0:
            return
        assert time.monotonic() < deadline, f"{queued} jobs still queued after {timeout} s"
        await asyncio.sleep(0.01)
