"""Workloads (a)-(c), and event ingestion (g, h), over HTTP on loopback.

Two systems, one Mainspring server:

- ``mainspring-http``: the benchmark functions served by Mainspring's own ASGI adapter
  (`bench/http_apps/mainspring_app.py`);
- ``inngest-py-http``: the same functions written with the official ``inngest`` 0.5.19 SDK and
  served by ``inngest.fast_api.serve`` (`bench/http_apps/inngest_app.py`).

The app runs in a subprocess (``python -m uvicorn``), started once per system. The server runs
in this process: for every workload a fresh ``Engine`` (durability "normal") on a fresh SQLite
file and its API (``create_app(engine, dev=True)``) on a ``uvicorn.Server`` task, always on the
same port so the app's ``INNGEST_BASE_URL`` stays right. The app is synced as ``mainspring dev
-u URL`` does it: a ``PUT`` on its serve URL, answered by its ``POST /fn/register``.

The server is in this process so that completion is observed by ``engine.wait``, which wakes the
moment the run settles; polling ``GET /v1/runs/{id}`` from outside would add its poll interval
to every figure and load the server under test. Events still enter over HTTP: one timed run is
``POST /e/{key}`` (httpx) -> ``engine.runs(event_id)`` -> ``engine.wait(run_id)``, and a check of
the status and output. Every step of a run is a real HTTP call from the engine's transport to
the app. Server start, sync and shutdown are not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
import orjson
import uvicorn

import mainspring
from bench.common import (
    EVENT_BATCH,
    N_EVENTS,
    N_EVENTS_TRIGGERED,
    N_FAN,
    N_RUNS,
    N_SEQ,
    REPS,
    WARMUP,
    Record,
    Sample,
    Workload,
    events_record,
    measure_async,
    per_step_record,
    throughput_record,
    total_record,
)
from mainspring.engine.engine import Engine
from mainspring.engine.records import RunStatus
from mainspring.sdk.client import Client
from mainspring.server.app import create_app

ROOT: Final = Path(__file__).resolve().parent.parent

OURS: Final = "mainspring-http"
OFFICIAL: Final = "inngest-py-http"
SYSTEMS: Final = (OURS, OFFICIAL)

#: The workloads each system runs: ingestion does not depend on the SDK, so only ours runs it.
SYSTEM_WORKLOADS: Final[dict[str, tuple[Workload, ...]]] = {
    OURS: ("a", "b", "c", "g", "h"),
    OFFICIAL: ("a", "b", "c"),
}

#: Serve path of both apps (the official FastAPI adapter's default; ours serves any path).
SERVE_PATH: Final = "/api/inngest"
#: Dev mode takes any non-empty event key.
EVENT_KEY: Final = "bench"

WAIT_TIMEOUT_S: Final = 60.0
#: (h) leaves thousands of runs queued at once; the last may finish long after it started.
DRAIN_TIMEOUT_S: Final = 600.0
RUN_LOOKUP_TIMEOUT_S: Final = 10.0
APP_START_TIMEOUT_S: Final = 60.0

Log = Callable[[str], None]


@dataclass(frozen=True)
class AppSpec:
    system: str
    target: str  # uvicorn's MODULE:ATTR
    app_id: str
    sdk: str


APPS: Final[dict[str, AppSpec]] = {
    OURS: AppSpec(OURS, "bench.http_apps.mainspring_app:app", "bench-http", "mainspring"),
    OFFICIAL: AppSpec(OFFICIAL, "bench.http_apps.inngest_app:app", "bench-official", "inngest"),
}


def versions() -> str:
    """The HTTP stack in use: uvicorn picks httptools and uvloop only if they are installed."""

    def version(name: str) -> str:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} not installed"

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parts = [version(n) for n in ("uvicorn", "httpx", "inngest")]
    return f"{', '.join(parts)}; uvicorn protocol {http}, event loop {loop}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _app_env(server_url: str) -> dict[str, str]:
    """The app's environment: dev mode, this server, and nothing inherited that could point
    either SDK elsewhere (an API URL or a signing key in the caller's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "MAINSPRING_"))}
    for prefix in ("INNGEST_", "MAINSPRING_"):
        env[prefix + "DEV"] = "1"
        env[prefix + "BASE_URL"] = server_url
    # The app imports the very `mainspring` this process uses (installed, or src/ as run.py
    # falls back to), and `bench` from the repository root.
    paths = [str(ROOT), str(Path(mainspring.__file__).resolve().parent.parent)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# --- the server in this process ----------------------------------------------------------------


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
        )
        self._uvicorn = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30.0)

    async def __aenter__(self) -> Server:
        await self.engine.start()
        try:
            # The same port serves every workload's fresh server in turn; asyncio's
            # create_server sets SO_REUSEADDR, so the previous server's TIME_WAITs don't matter.
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


# --- the app in a subprocess -------------------------------------------------------------------


class HttpApp:
    """One system's app on uvicorn in a subprocess, for all of that system's workloads.

    The server's port is chosen up front because the app learns it from its environment (it
    registers to ``INNGEST_BASE_URL``); each workload then starts a fresh server on that port.
    """

    def __init__(self, system: str, workdir: Path, log: Log = print) -> None:
        self.spec = APPS[system]
        self.workdir = workdir
        self.log = log
        self.server_port = free_port()
        self.app_port = free_port()
        self.app_url = f"http://127.0.0.1:{self.app_port}{SERVE_PATH}"
        self._log_path = workdir / f"{system}-app.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HttpApp:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.spec.target,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.app_port),
            "--log-level",
            "warning",
        ]
        with self._log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=_app_env(f"http://127.0.0.1:{self.server_port}"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_up(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the {self.spec.system} app exited with {self._proc.returncode}: "
                    f"{self.output()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.app_url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the {self.spec.system} app never answered on {self.app_url}")

    def output(self) -> str:
        """The end of the app's stdout and stderr, to explain a failure."""
        try:
            return self._log_path.read_text(errors="replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def run(self, workload: Workload) -> Record:
        """Run one workload against a fresh server and database; returns its record."""
        if workload not in SYSTEM_WORKLOADS[self.spec.system]:
            raise ValueError(f"{self.spec.system} does not run workload ({workload})")
        database = self.workdir / f"{self.spec.system}-{workload}.db"
        if database.exists():
            raise FileExistsError(f"{database} exists; each workload needs a fresh database")
        try:
            return asyncio.run(self._run(workload, database))
        except SystemExit as exc:
            # uvicorn calls sys.exit when it cannot bind (the port was taken since it was
            # picked): make that one failed measurement, not the end of the whole bench.
            raise RuntimeError(
                f"the server could not start on port {self.server_port} (exit {exc.code})"
            ) from exc
        except Exception as exc:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"{exc}; the app exited: {self.output()}") from exc
            raise

    @contextlib.asynccontextmanager
    async def _server(self, database: Path) -> AsyncIterator[Server]:
        async with Server(database, self.server_port) as server:
            await server.sync(self.app_url, self.spec.app_id)
            yield server

    async def _run(self, workload: Workload, database: Path) -> Record:
        async with self._server(database) as server:
            if workload == "a":
                return await _seq(server, self.spec.system, self.log)
            if workload == "b":
                return await _fan(server, self.spec.system, self.log)
            if workload == "c":
                return await _many(server, self.spec.system, self.log)
            if workload == "g":
                return await _ingest(server, self.spec.system, self.log)
            return await _ingest_triggered(server, self.spec.system, self.log)


# --- the workloads -----------------------------------------------------------------------------


async def _seq(server: Server, system: str, log: Log) -> Record:
    def run_seq(n: int) -> Awaitable[None]:
        return server.start_and_wait("bench/seq", {"n": n}, sum(range(n)), f"{n}-step run")

    empty = await measure_async(lambda: run_seq(0))
    log(f"  {system} a: empty run {empty.describe()}")
    full = await measure_async(lambda: run_seq(N_SEQ))
    log(f"  {system} a: {N_SEQ}-step run {full.describe()}")
    return per_step_record("a", system, empty, full, N_SEQ)


async def _fan(server: Server, system: str, log: Log) -> Record:
    async def run_fan() -> None:
        await server.start_and_wait("bench/fan", {"n": N_FAN}, sum(range(N_FAN)), "fan-out run")

    sample = await measure_async(run_fan)
    log(f"  {system} b: fan-out {N_FAN} {sample.describe()}")
    return total_record("b", system, sample)


async def _many(server: Server, system: str, log: Log) -> Record:
    async def run_many() -> None:
        # One POST per run, back to back, as the embedded (c) makes one engine.send per run.
        event_ids = [await server.send("bench/one", {"i": i}) for i in range(N_RUNS)]
        run_ids = [await server.run_id(event_id) for event_id in event_ids]
        await asyncio.gather(*(server.finish(r, i, "one-step run") for i, r in enumerate(run_ids)))

    sample = await measure_async(run_many)
    log(f"  {system} c: {N_RUNS} one-step runs {sample.describe()}")
    return throughput_record("c", system, sample, N_RUNS)


def _batches(name: str, count: int) -> list[bytes]:
    """``count`` events as JSON bodies of EVENT_BATCH events, encoded before the clock runs so
    the figure is the server's, not the client's JSON encoder's. Events carry no id: the server
    gives each one a fresh id, so the same bodies can be sent again on every repetition."""
    return [
        orjson.dumps([{"name": name, "data": {"i": i}} for i in range(start, start + EVENT_BATCH)])
        for start in range(0, count, EVENT_BATCH)
    ]


async def _post_all(server: Server, bodies: Sequence[bytes]) -> list[str]:
    ids: list[str] = []
    for body in bodies:  # one client, one request at a time
        ids += await server.post_events(body, EVENT_BATCH)
    return ids


async def _ingest(server: Server, system: str, log: Log) -> Record:
    # No function listens to this name: the figure is intake alone (validate, id, match, store).
    bodies = _batches("bench/ignored", N_EVENTS)
    sample = await measure_async(lambda: _post_all(server, bodies))
    log(f"  {system} g: {N_EVENTS:,} events, no trigger {sample.describe()}")
    return events_record("g", system, sample, N_EVENTS)


async def _ingest_triggered(server: Server, system: str, log: Log) -> Record:
    """Every event starts a one-step run of the app, which the engine runs while the events are
    still coming in. Timed: until the last POST is answered. The runs are then awaited (and
    checked) outside the clock, so each repetition starts with an idle engine; the time until
    the last run completed is printed as well, as runs/s."""
    bodies = _batches("bench/one", N_EVENTS_TRIGGERED)
    posted: list[float] = []
    completed: list[float] = []
    for rep in range(WARMUP + REPS):
        t0 = time.perf_counter()
        event_ids = await _post_all(server, bodies)
        t1 = time.perf_counter()
        run_ids = [await server.run_id(event_id) for event_id in event_ids]
        await asyncio.gather(
            *(server.finish(r, i, "triggered run", DRAIN_TIMEOUT_S) for i, r in enumerate(run_ids))
        )
        t2 = time.perf_counter()
        if rep >= WARMUP:
            posted.append(t1 - t0)
            completed.append(t2 - t0)
    sample, done = Sample(tuple(posted)), Sample(tuple(completed))
    log(f"  {system} h: {N_EVENTS_TRIGGERED:,} events, each starting a run {sample.describe()}")
    log(
        f"  {system} h: until all {N_EVENTS_TRIGGERED:,} runs completed {done.describe()} = "
        f"{N_EVENTS_TRIGGERED / done.median:,.0f} runs/s"
    )
    return events_record("h", system, sample, N_EVENTS_TRIGGERED)
