"""Our server in the test's own process, on a loopback port, for e2e tests of apps that a
test also serves over real HTTP in its process (so that it can watch or tune them).

The server is what ``mainspring dev`` runs, an engine and its HTTP API, on uvicorn in a
thread with its own event loop, so an app on the test's loop (Tornado) and the server never
share a loop. Apps sync by the usual route: a ``PUT`` to the app, which registers itself
with the server's ``/fn/register``; the server then calls the app over HTTP (aiohttp).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import httpx

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.server.app import create_app
from tests.e2e.support import FINISHED, on_uvicorn


@dataclasses.dataclass(frozen=True)
class LiveServer:
    """Our dev-mode server at ``url``, seen from an async test."""

    url: str

    async def sync(self, app_url: str) -> None:
        """Have the app at ``app_url`` register itself with this server."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.put(app_url)
        assert answer.status_code == 200, answer.text

    async def send(self, name: str, data: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            answer = await http.post("/e/key", json={"name": name, "data": data})
        assert answer.status_code == 200, answer.text
        [event_id] = answer.json()["ids"]
        assert isinstance(event_id, str)
        return event_id

    async def finished_run(self, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The one run of ``event_id``, once finished."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while True:
                runs = (await http.get(f"/v1/events/{event_id}/runs")).json()["data"]
                if runs and all(run["status"] in FINISHED for run in runs):
                    [run] = runs
                    assert isinstance(run, dict)
                    return run
                assert time.monotonic() < deadline, f"no finished run for {event_id}: {runs}"
                await asyncio.sleep(0.02)


@contextlib.contextmanager
def live_server(tmp_path: pathlib.Path) -> Iterator[LiveServer]:
    """Our server (dev mode, retries after 50 ms) on a free loopback port."""
    engine = Engine(
        inngest.Client(app_id="server", is_production=False),
        [],
        database=tmp_path / "server.db",
        retry_backoff=0.05,
        durability="normal",
    )
    with on_uvicorn(create_app(engine)) as port:
        yield LiveServer(f"http://127.0.0.1:{port}")
