"""Workloads (a)-(c), and event ingestion (g, h), over HTTP on loopback.

Three systems, one Mainspring server:

- ``mainspring-http``: the benchmark functions served by Mainspring's own ASGI adapter
  (`bench/http_apps/mainspring_app.py`);
- ``inngest-py-http``: the same functions written with the official ``inngest`` 0.5.19 SDK and
  served by ``inngest.fast_api.serve`` (`bench/http_apps/inngest_app.py`);
- ``inngest-ts-http``: the same functions on the official TypeScript SDK, served by Node's
  http server (`bench/http_apps/ts_app/`, run by `bench/http_apps/ts_runner.py`).

Three processes: the app (``python -m uvicorn``, or ``node``, started once per system), the server
(``mainspring dev`` on a fresh SQLite file for every workload, `bench/http_server.py`) and
this one, the driver. The driver sends events with `bench/wire_client.py` (requests encoded
before the clock starts, kept-alive connections) and learns that runs ended from the
server's long poll, ``POST /v1/runs/wait``, which answers when the last of them settles. So
the figures are the server's and the app's: the driver's own CPU during the timed runs is
measured (`bench/cpu.py`) and printed next to them, with the server's and the app's.

One timed run is ``POST /e/{key}``, then ``POST /v1/runs/wait`` for the event's run, and a
check of its status and output. Every step of a run is a real HTTP call from the server to
the app. Server start, sync and shutdown are not timed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
import orjson

from bench.common import (
    EVENT_BATCH,
    N_EVENTS,
    N_EVENTS_TRIGGERED,
    N_FAN,
    N_RUNS,
    N_SEQ,
    REPS,
    REPS_SPREAD,
    WARMUP,
    Record,
    Sample,
    Workload,
    events_record,
    measure_async,
    per_step_record,
    spread,
    throughput_record,
    total_record,
)
from bench.cpu import SERVER, CpuMeter, describe
from bench.http_apps import ts_runner
from bench.http_server import ROOT, ServerProcess, child_env

# The in-process server of the earlier layout, which bench/growth.py still uses (as hw.Server).
from bench.inprocess_server import Server as Server
from bench.subprocess_app import ManagedProcess, tail
from bench.wire_client import WireClient

OURS: Final = "mainspring-http"
OFFICIAL: Final = "inngest-py-http"
TS: Final = ts_runner.SYSTEM  # "inngest-ts-http"
SYSTEMS: Final = (OURS, OFFICIAL, TS)

#: The workloads each system runs: ingestion does not depend on the SDK, so only ours runs it.
SYSTEM_WORKLOADS: Final[dict[str, tuple[Workload, ...]]] = {
    OURS: ("a", "b", "c", "g", "h"),
    OFFICIAL: ("a", "b", "c"),
    TS: ("a", "b", "c"),
}

#: Serve path of both apps (the official FastAPI adapter's default; ours serves any path).
SERVE_PATH: Final = "/api/inngest"
#: Dev mode takes any non-empty event key.
EVENT_KEY: Final = "bench"

WAIT_TIMEOUT_S: Final = 60.0
#: (h) leaves thousands of runs queued at once; the last may finish long after it started.
DRAIN_TIMEOUT_S: Final = 600.0
#: The longest one ``POST /v1/runs/wait`` may wait (the server's cap); the driver asks again.
WAIT_REQUEST_S: Final = 60.0
APP_START_TIMEOUT_S: Final = 60.0

Log = Callable[[str], None]


@dataclass(frozen=True)
class AppSpec:
    system: str
    target: str  # uvicorn's MODULE:ATTR, or the Node app's script
    app_id: str
    sdk: str
    node: bool = False  # run by ts_runner.TsApp on Node rather than by uvicorn


APPS: Final[dict[str, AppSpec]] = {
    OURS: AppSpec(OURS, "bench.http_apps.mainspring_app:app", "bench-http", "mainspring"),
    OFFICIAL: AppSpec(OFFICIAL, "bench.http_apps.inngest_app:app", "bench-official", "inngest"),
    TS: AppSpec(TS, "bench/http_apps/ts_app/app.mjs", ts_runner.APP_ID, "inngest (npm)", node=True),
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
    parts = [version(n) for n in ("uvicorn", "inngest")]
    return (
        f"{', '.join(parts)}; uvicorn protocol {http}, event loop {loop}; {ts_versions()}; "
        "driver: bench/wire_client.py (HTTP/1.1, kept-alive)"
    )


def ts_versions() -> str:
    """Node's version and the TypeScript SDK's (installed, else the one package.json pins)."""
    node = shutil.which("node")
    try:
        shown = "node not installed" if node is None else f"node {_node_version(node)}"
    except (OSError, subprocess.SubprocessError):
        shown = "node (version unknown)"
    installed = ts_runner.APP_DIR / "node_modules" / "inngest" / "package.json"
    if installed.exists():
        sdk = f"inngest (npm) {orjson.loads(installed.read_bytes())['version']}"
    else:
        pinned = orjson.loads((ts_runner.APP_DIR / "package.json").read_bytes())
        sdk = f"inngest (npm) {pinned['dependencies']['inngest']} not installed"
    return f"{shown}, {sdk}"


def _node_version(node: str) -> str:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip().removeprefix("v") or "(version unknown)"


def ts_unavailable() -> str | None:
    """Why the TypeScript app cannot run here (no node 20+ or npm, or its locked dependencies
    failed to install), or None. Installs them with ``npm ci`` when they are missing."""
    try:
        ts_runner.node()
        ts_runner.install()
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        reason = str(exc)
        if ts_runner.SYSTEM not in reason:
            reason = f"{ts_runner.SYSTEM}: {reason}"
        return f"unavailable: {reason}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the driver --------------------------------------------------------------------------------


class Driver:
    """Events into the server and runs' ends out of it, on the wire client."""

    def __init__(self, client: WireClient) -> None:
        self.client = client

    def events(self, name: str, data: Sequence[dict[str, Any]]) -> bytes:
        """A ``POST /e/{key}`` of one event per item of ``data``, encoded now: before the
        clock runs, so the figure is the server's, not the client's JSON encoder's. Events
        carry no id: the server gives each a fresh one, so a request can be sent again."""
        body = [{"name": name, "data": d} for d in data]
        return self.client.prepare("POST", f"/e/{EVENT_KEY}", orjson.dumps(body))

    async def post(self, request: bytes, count: int) -> list[str]:
        """Send a prepared ``POST /e/``; the ids of its ``count`` events."""
        answer = await self.client.send(request)
        if answer.status != 200:
            raise RuntimeError(f"POST /e/ answered {answer.status}: {answer.text[:300]}")
        ids: list[str] = answer.json()["ids"]
        if len(ids) != count:
            raise RuntimeError(f"POST /e/ returned {len(ids)} ids for {count} events")
        return ids

    async def settle(
        self,
        event_ids: Sequence[str],
        wants: Sequence[int],
        what: str,
        timeout: float = WAIT_TIMEOUT_S,
    ) -> None:
        """Wait until the run each event started has ended; check it completed with the
        output in ``wants`` (by the event's position)."""
        deadline = time.monotonic() + timeout
        want_of = dict(zip(event_ids, wants, strict=True))
        ask: dict[str, Any] = {"event_ids": list(event_ids)}
        seen: dict[str, dict[str, Any]] = {}  # by event id
        while True:
            ask["timeout"] = max(0.0, min(WAIT_REQUEST_S, deadline - time.monotonic()))
            answer = await self.client.request("POST", "/v1/runs/wait", orjson.dumps(ask))
            if answer.status != 200:
                raise RuntimeError(f"{what}: runs/wait answered {answer.status}: {answer.text}")
            body = answer.json()
            for run in body["data"]:
                if seen.setdefault(run["event_id"], run)["run_id"] != run["run_id"]:
                    raise RuntimeError(f"{what}: event {run['event_id']} started several runs")
                seen[run["event_id"]] = run
            if body["done"] or time.monotonic() >= deadline:
                break
            # Ask again for the runs still going (by run id: the events are known now).
            ask = {"run_ids": [r["run_id"] for r in body["data"] if r["ended_at"] is None]}
        check_runs(seen, want_of, what)


def check_runs(
    runs_by_event: dict[str, dict[str, Any]], want_of: dict[str, int], what: str
) -> None:
    """Each event started one run, which completed with the output wanted."""
    missing = [event_id for event_id in want_of if event_id not in runs_by_event]
    if missing:
        raise RuntimeError(f"{what}: {len(missing)} events started no run (first {missing[0]})")
    for event_id, want in want_of.items():
        run = runs_by_event[event_id]
        if run["status"] != "Completed" or run["output"] != want:
            raise RuntimeError(
                f"{what}: status {run['status']!r}, output {run['output']!r}, error "
                f"{run['error']!r}; expected 'Completed', {want!r}"
            )


# --- the app in a subprocess -------------------------------------------------------------------


class HttpApp:
    """One system's app on uvicorn in a subprocess (the TypeScript app: on Node, through
    `ts_runner.TsApp`), for all of that system's workloads.

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
        # The uvicorn app, or the Node one (a TsApp, itself a ManagedProcess).
        self._process: ManagedProcess | None = None

    def __enter__(self) -> HttpApp:
        server_url = f"http://127.0.0.1:{self.server_port}"
        if self.spec.node:
            node_app = ts_runner.TsApp(
                self.workdir,
                server_port=self.server_port,
                app_port=self.app_port,
                env=child_env({"INNGEST_DEV": "1", "INNGEST_BASE_URL": server_url}),
            )
            self._process = node_app.__enter__()
            self.app_url = node_app.app_url
            return self
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
        env = child_env(
            {
                f"{prefix}{name}": value
                for prefix in ("INNGEST_", "MAINSPRING_")
                for name, value in (("DEV", "1"), ("BASE_URL", server_url))
            }
        )
        self._process = ManagedProcess(
            f"the {self.spec.system} app", command, cwd=ROOT, env=env, log_path=self._log_path
        )
        self._process.launch(self.app_url, APP_START_TIMEOUT_S)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"the {self.spec.system} app is not running")
        return self._process.pid

    def exited(self) -> bool:
        """Whether the app was started and has since exited."""
        return self._process is not None and self._process.exited()

    def output(self) -> str:
        """The end of the app's stdout and stderr, to explain a failure (``TsApp`` logs to
        the same ``<system>-app.log``)."""
        return tail(self._log_path)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def sync(self, server: ServerProcess) -> None:
        """Ask the app to sync, as ``mainspring dev -u`` pings it; it registers with the
        server, which must then serve its functions."""
        answer = httpx.put(
            self.app_url,
            json={"url": self.app_url},
            headers={"x-inngest-server-kind": "dev"},
            timeout=30.0,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"sync of {self.app_url} failed: {answer.status_code} {answer.text}")
        listed = httpx.get(f"{server.url}/v1/apps/{self.spec.app_id}/functions", timeout=10.0)
        if listed.status_code != 200:
            raise RuntimeError(
                f"{self.app_url} answered the sync but app {self.spec.app_id!r} is not "
                f"registered: {listed.status_code} {listed.text[:300]}"
            )

    def run(self, workload: Workload) -> Record:
        """Run one workload against a fresh server and database; returns its record."""
        if workload not in SYSTEM_WORKLOADS[self.spec.system]:
            raise ValueError(f"{self.spec.system} does not run workload ({workload})")
        name = f"{self.spec.system}-{workload}"
        server = ServerProcess(
            self.workdir / f"{name}.db", self.server_port, self.workdir / f"{name}-server.log"
        )
        try:
            with server:
                self.sync(server)
                meter = CpuMeter.of({SERVER: server.pid, "app": self.pid})
                record = asyncio.run(self._drive(workload, meter))
                server.check_alive()
        except Exception as exc:
            if self.exited():
                raise RuntimeError(f"{exc}; the app exited: {self.output()}") from exc
            raise
        record["cpu"] = meter.shares()
        self.log(f"  {self.spec.system} {workload}: cpu while timed: {describe(record['cpu'])}")
        return record

    async def _drive(self, workload: Workload, meter: CpuMeter) -> Record:
        async with WireClient("127.0.0.1", self.server_port) as client:
            await client.open(1)
            driver = Driver(client)
            system = self.spec.system
            if workload == "a":
                return await _seq(driver, meter, system, self.log)
            if workload == "b":
                return await _fan(driver, meter, system, self.log)
            if workload == "c":
                return await _many(driver, meter, system, self.log)
            if workload == "g":
                return await _ingest(driver, meter, system, self.log)
            return await _ingest_triggered(driver, meter, system, self.log)


# --- the workloads -----------------------------------------------------------------------------


async def _one_run(driver: Driver, request: bytes, want: int, what: str) -> None:
    event_ids = await driver.post(request, 1)
    await driver.settle(event_ids, [want], what)


async def _seq(driver: Driver, meter: CpuMeter, system: str, log: Log) -> Record:
    def run_seq(n: int) -> Callable[[], Awaitable[None]]:
        request = driver.events("bench/seq", [{"n": n}])
        return lambda: _one_run(driver, request, sum(range(n)), f"{n}-step run")

    empty = await measure_async(run_seq(0), meter=meter)
    log(f"  {system} a: empty run {empty.describe()}")
    full = await measure_async(run_seq(N_SEQ), meter=meter)
    log(f"  {system} a: {N_SEQ}-step run {full.describe()}")
    return per_step_record("a", system, empty, full, N_SEQ)


async def _fan(driver: Driver, meter: CpuMeter, system: str, log: Log) -> Record:
    request = driver.events("bench/fan", [{"n": N_FAN}])
    sample = await measure_async(
        lambda: _one_run(driver, request, sum(range(N_FAN)), "fan-out run"), meter=meter
    )
    log(f"  {system} b: fan-out {N_FAN} {sample.describe()}")
    record = total_record("b", system, sample)
    record["samples"] = [run * 1e3 for run in sample.runs]
    return record


async def _many(driver: Driver, meter: CpuMeter, system: str, log: Log) -> Record:
    # One POST per run, back to back, as the embedded (c) makes one engine.send per run.
    requests = [driver.events("bench/one", [{"i": i}]) for i in range(N_RUNS)]

    async def run_many() -> None:
        event_ids = [(await driver.post(request, 1))[0] for request in requests]
        await driver.settle(event_ids, range(N_RUNS), "one-step run")

    sample = await measure_async(run_many, reps=REPS_SPREAD, meter=meter)
    record = throughput_record("c", system, sample, N_RUNS)
    record["samples"] = [N_RUNS / run for run in sample.runs]
    log(f"  {system} c: {N_RUNS} one-step runs {sample.describe()}")
    log(f"  {system} c: {spread(record['samples'], 'runs/s')}")
    return record


def _batches(driver: Driver, name: str, count: int) -> list[bytes]:
    """``count`` events as requests of EVENT_BATCH events each."""
    return [
        driver.events(name, [{"i": i} for i in range(start, start + EVENT_BATCH)])
        for start in range(0, count, EVENT_BATCH)
    ]


async def _post_all(driver: Driver, requests: Sequence[bytes]) -> list[str]:
    ids: list[str] = []
    for request in requests:  # one connection, one request at a time
        ids += await driver.post(request, EVENT_BATCH)
    return ids


async def _ingest(driver: Driver, meter: CpuMeter, system: str, log: Log) -> Record:
    # No function listens to this name: the figure is intake alone (validate, id, match, store).
    requests = _batches(driver, "bench/ignored", N_EVENTS)
    sample = await measure_async(lambda: _post_all(driver, requests), meter=meter)
    log(f"  {system} g: {N_EVENTS:,} events, no trigger {sample.describe()}")
    record = events_record("g", system, sample, N_EVENTS)
    record["samples"] = [N_EVENTS / run for run in sample.runs]
    return record


async def _ingest_triggered(driver: Driver, meter: CpuMeter, system: str, log: Log) -> Record:
    """Every event starts a one-step run of the app, which the engine runs while the events are
    still coming in. Timed: until the last POST is answered. The runs are then awaited (and
    checked) outside the clock, so each repetition starts with an idle engine; the time until
    the last run completed is printed as well, as runs/s."""
    requests = _batches(driver, "bench/one", N_EVENTS_TRIGGERED)
    wants = range(N_EVENTS_TRIGGERED)  # event i's run returns i
    posted: list[float] = []
    completed: list[float] = []
    for rep in range(WARMUP + REPS):
        measured = rep >= WARMUP
        if measured:
            meter.start()
        t0 = time.perf_counter()
        event_ids = await _post_all(driver, requests)
        t1 = time.perf_counter()
        if measured:
            meter.stop()
        await driver.settle(event_ids, wants, "triggered run", DRAIN_TIMEOUT_S)
        t2 = time.perf_counter()
        if measured:
            posted.append(t1 - t0)
            completed.append(t2 - t0)
    sample, done = Sample(tuple(posted)), Sample(tuple(completed))
    log(f"  {system} h: {N_EVENTS_TRIGGERED:,} events, each starting a run {sample.describe()}")
    log(
        f"  {system} h: until all {N_EVENTS_TRIGGERED:,} runs completed {done.describe()} = "
        f"{N_EVENTS_TRIGGERED / done.median:,.0f} runs/s"
    )
    record = events_record("h", system, sample, N_EVENTS_TRIGGERED)
    record["samples"] = [N_EVENTS_TRIGGERED / run for run in sample.runs]
    return record
