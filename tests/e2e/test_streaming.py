"""Streamed answers end to end: our server calls a FastAPI app (uvicorn on 127.0.0.1) served
with ``streaming=Streaming.FORCE``, and reads each 201 keep-alive answer as the answer
inside it: outputs, step results and the no-retry decision all arrive through the stream.

A recording ASGI layer around the app sees what went over the wire: every execution
answered 201, and a step slower than the keep-alive interval sent spaces while it ran.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import fastapi
import pytest

import mainspring as inngest
import mainspring.fast_api
from mainspring.sdk.serve import streaming
from tests.e2e.inprocess_server import LiveServer, live_server
from tests.e2e.support import on_uvicorn

KEEPALIVE = 0.05


class Wire:
    """An ASGI layer that notes, per execution call, its status and its body's chunks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[tuple[int, list[bytes]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
        if scope["type"] != "http" or scope["method"] != "POST" or "fnId" not in query:
            await self.app(scope, receive, send)
            return
        status, chunks = 0, []

        async def noting(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message.get("body"):
                chunks.append(message["body"])
            await send(message)

        await self.app(scope, receive, noting)
        self.calls.append((status, chunks))


def build(
    server_url: str, attempts: list[int]
) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    client = inngest.Client(app_id="streamed", is_production=False, api_base_url=server_url)

    async def slowly(value: str) -> str:
        await asyncio.sleep(KEEPALIVE * 6)  # several keep-alive intervals
        return value

    @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="s/slow"))
    async def slow(ctx: inngest.Context) -> dict[str, object]:
        first = await ctx.step.run("first", slowly, "a")
        second = await ctx.step.run("second", lambda: first + "b")
        return {"out": second, "job_id": ctx.job_id is not None}

    def nap() -> str:
        time.sleep(KEEPALIVE * 6)
        return "rested"

    @client.create_function(fn_id="slow-sync", trigger=inngest.TriggerEvent(event="s/sync"))
    def slow_sync(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("nap", nap)

    @client.create_function(
        fn_id="refuse", trigger=inngest.TriggerEvent(event="s/refuse"), retries=2
    )
    async def refuse(ctx: inngest.Context) -> None:
        attempts.append(ctx.attempt)
        raise inngest.NonRetriableError("not today")

    return client, [slow, slow_sync, refuse]


@pytest.fixture
def world(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LiveServer, str, Wire, list[int]]]:
    """Our server, and a streaming FastAPI app synced to it: (server, app URL, wire, the
    attempts of ``refuse``)."""
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", KEEPALIVE)
    attempts: list[int] = []
    with live_server(tmp_path) as server:
        app = fastapi.FastAPI()
        client, functions = build(server.url, attempts)
        mainspring.fast_api.serve(app, client, functions, streaming=inngest.Streaming.FORCE)
        wire = Wire(app)
        with on_uvicorn(wire) as port:
            yield server, f"http://127.0.0.1:{port}/api/inngest", wire, attempts


World = tuple[LiveServer, str, Wire, list[int]]


async def test_streamed_answers_run_functions_to_the_end(world: World) -> None:
    server, app_url, wire, _ = world
    await server.sync(app_url)
    run = await server.finished_run(await server.send("s/slow", {}))
    assert (run["status"], run["output"]) == ("Completed", {"out": "ab", "job_id": True})
    run = await server.finished_run(await server.send("s/sync", {}))
    assert (run["status"], run["output"]) == ("Completed", "rested")
    assert wire.calls, "the server never called the app"
    assert {status for status, _ in wire.calls} == {201}
    # The slow steps' calls kept the connection alive with spaces while they ran.
    keepalives = [chunks.count(b" ") for _, chunks in wire.calls]
    assert max(keepalives) >= 3, keepalives


async def test_the_no_retry_decision_arrives_through_the_stream(world: World) -> None:
    server, app_url, wire, attempts = world
    await server.sync(app_url)
    run = await server.finished_run(await server.send("s/refuse", {}))
    assert run["status"] == "Failed"
    assert run["error"]["message"] == "not today"
    assert attempts == [0]  # x-inngest-no-retry was read from inside the 201 answer
    assert [status for status, _ in wire.calls] == [201]
