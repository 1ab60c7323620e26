"""Held runs on the server (issue: deploys, rule 4): an app synced over HTTP that drops a
function with runs in flight, by syncing without it or by answering that it no longer
serves it. Both sides in memory, over ASGI; time is a :class:`~mainspring.ManualClock`.

The server's own client is called ``mainspring``, as the one ``mainspring dev`` makes: a
held run names the app that served its function, never the server.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.sdk.serve.asgi import serve
from mainspring.server.app import create_app
from tests.conftest import wait_for_job
from tests.integration.test_held_runs import APP, DAY, NAP, NAPPER, build
from tests.integration.test_server import HostRouter

APP_URL = "http://app/api/inngest"


class Deploys:
    """A server engine and an app whose deploys the test switches (with or without
    ``napper``), all over one in-memory HTTP client."""

    def __init__(self, router: HostRouter, http: httpx.AsyncClient, db: pathlib.Path) -> None:
        self.router = router
        self.http = http
        self.db = db
        self.clock = inngest.ManualClock()

    def deploy(self, *, with_napper: bool) -> None:
        """Serve this version of the app at its URL (nothing is synced)."""
        client, functions = build(
            with_napper=with_napper, is_production=False, api_base_url="http://server"
        )
        app = serve(client, functions, http=self.http)
        self.router.hosts["app"] = httpx.ASGITransport(app=app)

    async def sync(self) -> None:
        answer = await self.http.put(APP_URL, headers={"x-inngest-server-kind": "dev"})
        assert answer.status_code == 200, answer.text

    @asynccontextmanager
    async def server(self) -> AsyncIterator[Engine]:
        engine = Engine(
            inngest.Client(app_id="mainspring", is_production=False),
            [],
            database=self.db,
            durability="normal",
            retry_backoff=0.01,
            http=self.http,
            clock=self.clock,
        )
        self.router.hosts["server"] = httpx.ASGITransport(app=create_app(engine))
        async with engine:
            yield engine

    async def run(self, run_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"http://server/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    async def until_held(self, run_id: str) -> dict[str, Any]:
        for _ in range(500):
            run = await self.run(run_id)
            if run.get("waiting_for"):
                return run
            await asyncio.sleep(0.01)
        raise AssertionError(f"run {run_id} was never held: {run}")

    async def sleeping_run(self, engine: Engine) -> str:
        sent = await self.http.post(
            "http://server/e/key", content=orjson.dumps({"name": "nap", "data": {}})
        )
        [event_id] = sent.json()["ids"]
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        return run.id


@pytest.fixture
async def deploys(tmp_path: pathlib.Path) -> AsyncIterator[Deploys]:
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        yield Deploys(router, http, tmp_path / "server.db")


def held_reason(run: dict[str, Any]) -> dict[str, Any]:
    waiting: dict[str, Any] = run["waiting_for"]
    assert waiting["waiting_for"] == "function", waiting
    assert waiting["function"] == NAPPER
    assert waiting["app"] == APP
    assert f"function {NAPPER!r} of app {APP!r} is not registered" in waiting["message"]
    return waiting


async def test_an_app_synced_without_a_function_holds_its_runs_until_it_syncs_it_again(
    deploys: Deploys, caplog: pytest.LogCaptureFixture
) -> None:
    deploys.deploy(with_napper=True)
    async with deploys.server() as engine:
        await deploys.sync()
        run_id = await deploys.sleeping_run(engine)
        deploys.deploy(with_napper=False)
        with caplog.at_level(logging.WARNING, logger="mainspring.engine"):
            await deploys.sync()
        [dropped] = [r.getMessage() for r in caplog.records if "no longer serves" in r.message]
        assert f"app {APP!r} no longer serves {NAPPER!r}, which have 1 runs in flight" in dropped
        deploys.clock.advance(NAP.total_seconds())
        run = await deploys.until_held(run_id)
        assert run["status"] == "Running"
        held_reason(run)
        trace = await deploys.http.post(
            "http://server/v0/gql",
            json={
                "query": "query($id: String!) { run(runID: $id) { status trace "
                "{ childrenSpans { name status } } } }",
                "variables": {"id": run_id},
            },
        )
        spans = trace.json()["data"]["run"]["trace"]["childrenSpans"]
        [waiting] = [s for s in spans if s["name"].startswith("Waiting for function")]
        assert waiting["status"] == "QUEUED"
        assert f"function {NAPPER!r} of app {APP!r}" in waiting["name"]

        deploys.deploy(with_napper=True)
        await deploys.sync()
        done = await engine.wait(run_id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == [1, 2]


async def test_a_run_held_over_http_fails_after_the_grace_period_naming_the_app(
    deploys: Deploys,
) -> None:
    deploys.deploy(with_napper=True)
    async with deploys.server() as engine:
        await deploys.sync()
        run_id = await deploys.sleeping_run(engine)
        deploys.deploy(with_napper=False)
        await deploys.sync()
        deploys.clock.advance(NAP.total_seconds())
        waiting = held_reason(await deploys.until_held(run_id))
    # A restart keeps it held, for the same function of the same app, until the same time.
    async with deploys.server() as engine:
        assert held_reason(await deploys.run(run_id)) == waiting
        deploys.clock.advance(DAY)
        done = await engine.wait(run_id, timeout=10)
    assert done.status == "Failed"
    assert done.error is not None
    assert done.error["name"] == "FunctionNotFoundError"
    assert f"function {NAPPER!r} of app {APP!r} was not registered for 1d" in done.error["message"]
    assert "mainspring" not in done.error["message"]


async def test_an_app_that_answers_it_lost_a_function_holds_its_runs(deploys: Deploys) -> None:
    # The app restarts without napper but does not sync: the server still routes napper
    # to it, and the app answers function_not_found.
    deploys.deploy(with_napper=True)
    async with deploys.server() as engine:
        await deploys.sync()
        run_id = await deploys.sleeping_run(engine)
        deploys.deploy(with_napper=False)
        deploys.clock.advance(NAP.total_seconds())
        run = await deploys.until_held(run_id)
        held_reason(run)
        # It comes back and syncs (as `mainspring dev` asks it to): the run goes on.
        deploys.deploy(with_napper=True)
        await deploys.sync()
        done = await engine.wait(run_id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == [1, 2]


async def test_a_removed_app_holds_its_runs_until_it_syncs_again(deploys: Deploys) -> None:
    deploys.deploy(with_napper=True)
    async with deploys.server() as engine:
        await deploys.sync()
        run_id = await deploys.sleeping_run(engine)
        removed = await deploys.http.delete("http://server/fn/remove", params={"url": APP_URL})
        assert removed.status_code == 200, removed.text
        deploys.clock.advance(NAP.total_seconds())
        held_reason(await deploys.until_held(run_id))
        await deploys.sync()
        done = await engine.wait(run_id, timeout=10)
    assert done.status == "Completed", done.error
