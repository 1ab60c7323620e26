"""``mainspring.tornado``: a real Tornado server on 127.0.0.1 (this test's event loop),
synced to our server and called by it over HTTP, with async and sync functions alike (the
reference's Tornado adapter serves sync ones only). A sync step that blocks does not hold
Tornado's loop up, and the app's XSRF protection does not stop the executor."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

import mainspring as inngest
import mainspring.tornado
from mainspring.sdk.serve import tornado as tornado_adapter
from tests.e2e.inprocess_server import LiveServer, live_server


class Gate:
    """Holds a sync step until the test opens it; counts the attempts of ``refuse``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.refusals = 0

    def wait(self) -> str:
        self.entered.set()
        assert self.release.wait(10), "the gate was never opened"
        return "through"


def build(server_url: str, gate: Gate) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    client = inngest.Client(app_id="tornado-app", is_production=False, api_base_url=server_url)

    @client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="t/greet"))
    async def greet(ctx: inngest.Context) -> dict[str, object]:
        name = await ctx.step.run("name", lambda: str(ctx.event.data["name"]).title())
        pair = await ctx.group.parallel(
            (
                lambda: ctx.step.run("hello", lambda: f"hello {name}"),
                lambda: ctx.step.run("bye", lambda: f"bye {name}"),
            )
        )
        return {"said": list(pair), "ids": [ctx.job_id is not None, ctx.request_id is not None]}

    @client.create_function(fn_id="shout", trigger=inngest.TriggerEvent(event="t/shout"))
    def shout(ctx: inngest.ContextSync) -> str:
        loud = ctx.step.run("upper", lambda: str(ctx.event.data["name"]).upper())
        return ctx.step.run("bang", lambda: f"{loud}!")

    @client.create_function(fn_id="held", trigger=inngest.TriggerEvent(event="t/held"))
    def held(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("gate", gate.wait)

    @client.create_function(
        fn_id="refuse", trigger=inngest.TriggerEvent(event="t/refuse"), retries=2
    )
    async def refuse(ctx: inngest.Context) -> None:
        gate.refusals += 1
        raise inngest.NonRetriableError("not today")

    return client, [greet, shout, held, refuse]


@contextlib.asynccontextmanager
async def serve_tornado(app: tornado.web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port, on this test's event loop; its origin."""
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.fixture
async def world(tmp_path: pathlib.Path) -> AsyncIterator[tuple[LiveServer, str, Gate]]:
    """Our server, and a Tornado app (XSRF checks on) synced to it: (server, app URL, gate)."""
    gate = Gate()
    with live_server(tmp_path) as server:
        client, functions = build(server.url, gate)
        app = tornado.web.Application(xsrf_cookies=True)
        mainspring.tornado.serve(app, client, functions)
        async with serve_tornado(app) as origin:
            app_url = f"{origin}/api/inngest"
            await server.sync(app_url)
            try:
                yield server, app_url, gate
            finally:
                gate.release.set()


async def test_async_and_sync_functions_run_through_tornado(
    world: tuple[LiveServer, str, Gate],
) -> None:
    server, _, _ = world
    greeted = await server.finished_run(await server.send("t/greet", {"name": "ada"}))
    assert greeted["status"] == "Completed", greeted
    assert greeted["output"] == {"said": ["hello Ada", "bye Ada"], "ids": [True, True]}
    shouted = await server.finished_run(await server.send("t/shout", {"name": "ada"}))
    assert (shouted["status"], shouted["output"]) == ("Completed", "ADA!")


async def test_a_non_retriable_error_fails_the_run(world: tuple[LiveServer, str, Gate]) -> None:
    server, _, gate = world
    run = await server.finished_run(await server.send("t/refuse", {}))
    assert run["status"] == "Failed"
    assert run["error"]["message"] == "not today"
    assert gate.refusals == 1  # x-inngest-no-retry reached the server: no retry


async def test_a_blocked_sync_step_leaves_tornados_loop_free(
    world: tuple[LiveServer, str, Gate],
) -> None:
    server, app_url, gate = world
    event_id = await server.send("t/held", {})
    assert await asyncio.to_thread(gate.entered.wait, 10)
    async with httpx.AsyncClient(timeout=5) as http:
        look = await http.get(app_url)  # answered while the step holds its thread
    assert look.status_code == 200
    assert look.json()["function_count"] == 4
    assert look.headers["x-inngest-framework"] == "tornado"
    gate.release.set()
    run = await server.finished_run(event_id)
    assert (run["status"], run["output"]) == ("Completed", "through")


def test_the_reference_module_name() -> None:
    assert mainspring.tornado.serve is tornado_adapter.serve
