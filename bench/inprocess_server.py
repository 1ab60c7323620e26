"""A Mainspring server in the caller's event loop: a fresh ``Engine`` (durability "normal")
on ``database`` and its API on a ``uvicorn.Server`` task.

The HTTP suite (`http_workloads.py`) no longer uses it: there the server runs in a process
of its own (`http_server.py`), so the driver's client does not share its event loop. It is
kept for `growth.py`, which reads the engine directly (``engine.wait``) to time how a run's
cost grows with its size, where a shared loop weighs the same at every size.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
import orjson
import uvicorn

from mainspring.engine.engine import Engine
from mainspring.engine.records import RunStatus
from mainspring.sdk.client import Client
from mainspring.server.app import create_app
from mainspring.server.one_write import one_write_protocol

#: Dev mode takes any non-empty event key.
EVENT_KEY: Final = "bench"
WAIT_TIMEOUT_S: Final = 60.0
RUN_LOOKUP_TIMEOUT_S: Final = 10.0


class Server:
    """A fresh engine on ``database`` and its API on uvicorn at ``port``, in this event loop."""

    def __init__(self, database: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.engine = Engine(
            Client(app_id="mainspring-bench-server", is_production=False),
            [],
            database=str(database),
            durability="normal",
        )
        # uvicorn binds host:port itself, as `mainspring dev` does: asyncio then sets TCP_NODELAY
        # on accepted connections (it does not for a socket made with socket.socket(), whose
        # proto is 0, and Nagle's algorithm would hold back each response body ~40 ms).
        config = uvicorn.Config(
            create_app(self.engine, dev=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            # The engine is started by __aenter__ rather than by the app's lifespan, so a
            # failure to start raises there instead of making uvicorn call sys.exit in a task.
            lifespan="off",
            # As `mainspring dev` serves: an answer's head and body in one write.
            http=one_write_protocol("auto"),
        )
        self._uvicorn = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30.0)

    async def __aenter__(self) -> Server:
        await self.engine.start()
        try:
            # The same port serves every fresh server in turn; asyncio's create_server sets
            # SO_REUSEADDR, so the previous server's TIME_WAITs don't matter.
            self._task = asyncio.create_task(self._uvicorn.serve())
            while not self._uvicorn.started:
                if self._task.done():
                    await self._task
                    raise RuntimeError(f"the server on {self.url} stopped while starting")
                await asyncio.sleep(0.01)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()
        if self._task is not None:
            self._uvicorn.should_exit = True
            await self._task
        await self.engine.stop()

    async def sync(self, app_url: str, app_id: str) -> None:
        """Ask the app to sync, as ``mainspring dev -u`` pings it; it registers back."""
        answer = await self.http.put(
            app_url, json={"url": app_url}, headers={"x-inngest-server-kind": "dev"}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"sync of {app_url} failed: {answer.status_code} {answer.text}")
        if app_id not in self.engine.apps():
            raise RuntimeError(f"{app_url} answered the sync but app {app_id!r} is not registered")

    async def post_events(self, body: bytes, count: int) -> list[str]:
        """``POST /e/{key}`` with a JSON body of ``count`` events; their ids."""
        answer = await self.http.post(
            f"/e/{EVENT_KEY}", content=body, headers={"content-type": "application/json"}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"POST /e/ answered {answer.status_code}: {answer.text[:300]}")
        ids: list[str] = answer.json()["ids"]
        if len(ids) != count:
            raise RuntimeError(f"POST /e/ returned {len(ids)} ids for {count} events")
        return ids

    async def send(self, name: str, data: dict[str, Any]) -> str:
        [event_id] = await self.post_events(orjson.dumps({"name": name, "data": data}), 1)
        return event_id

    async def run_id(self, event_id: str) -> str:
        """The id of the one run ``event_id`` started (retrying briefly until it is recorded)."""
        deadline = time.monotonic() + RUN_LOOKUP_TIMEOUT_S
        polls = 0
        while True:
            runs = await self.engine.runs(event_id)
            if len(runs) == 1:
                return runs[0].id
            if len(runs) > 1:
                raise RuntimeError(f"event {event_id} started {len(runs)} runs, expected 1")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"event {event_id} started no run within {RUN_LOOKUP_TIMEOUT_S}s"
                )
            polls += 1
            await asyncio.sleep(0 if polls < 100 else 0.001)

    async def finish(
        self, run_id: str, want: int, what: str, timeout: float = WAIT_TIMEOUT_S
    ) -> None:
        done = await self.engine.wait(run_id, timeout=timeout)
        if done.status is not RunStatus.COMPLETED or done.output != want:
            raise RuntimeError(
                f"{what}: status {done.status.value!r}, output {done.output!r}, error "
                f"{done.error!r}; expected 'Completed', {want!r}"
            )

    async def start_and_wait(self, name: str, data: dict[str, Any], want: int, what: str) -> None:
        event_id = await self.send(name, data)
        await self.finish(await self.run_id(event_id), want, what)
