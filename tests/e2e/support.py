"""Helpers shared by the end-to-end tests that start servers in subprocesses."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import inngest
import uvicorn

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: Run statuses after which nothing more happens.
FINISHED = frozenset({"Completed", "Failed", "Cancelled"})


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Until ``url`` answers (anything below 500), or fail if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: process exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never came up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a subprocess, killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclasses.dataclass
class OfficialServers:
    """A running ``mainspring dev`` and an official-SDK app it syncs, seen from a test."""

    url: str
    sender: inngest.Inngest
    #: The app's events are named ``<prefix>/...``, its functions ``<app_id>-...``.
    prefix: str
    app_id: str

    def send(self, name: str, data: dict[str, Any]) -> str:
        """Send one event over plain HTTP (``POST /e/{key}``); its internal id."""
        answer = httpx.post(f"{self.url}/e/key", json={"name": name, "data": data}, timeout=5)
        assert answer.status_code == 200, answer.text
        [event_id] = answer.json()["ids"]
        assert isinstance(event_id, str)
        return event_id

    def send_official(self, name: str, data: dict[str, Any]) -> str:
        """Send one event with the official client (seeded ids); its internal id."""
        [event_id] = self.sender.send_sync(inngest.Event(name=name, data=data))
        return event_id

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = httpx.get(
            f"{self.url}/v1/events/{event_id}/runs", timeout=5
        ).json()["data"]
        return runs

    def finished_runs(
        self, event_id: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The ``count`` runs of ``event_id`` once all have finished (by function id)."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs(event_id)
            if len(runs) >= count and all(r["status"] in FINISHED for r in runs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the runs of {event_id} did not finish in {timeout}s: {runs}")
        assert len(runs) == count, runs
        return sorted(runs, key=lambda r: str(r["function_id"]))

    def finished_run(self, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
        [run] = self.finished_runs(event_id, 1, timeout)
        answer = httpx.get(f"{self.url}/v1/runs/{run['run_id']}", timeout=5)
        detail: dict[str, Any] = answer.json()["data"]
        assert detail == run
        return detail


def start_dev_server(
    app_url: str, port: int, database: pathlib.Path, *options: str
) -> subprocess.Popen[bytes]:
    """``mainspring dev -u APP_URL`` on ``port`` over ``database``, in a subprocess."""
    command = ["-u", app_url, "--port", str(port), "--db", str(database), *options]
    return subprocess.Popen([sys.executable, "-m", "mainspring.cli", "dev", *command], cwd=ROOT)


@contextlib.contextmanager
def official_servers(
    app_command: Callable[[int], list[str]],
    workdir: pathlib.Path,
    *,
    prefix: str,
    app_id: str,
) -> Iterator[OfficialServers]:
    """An official-SDK app (``app_command(port)``, run from the repository root) and a
    ``mainspring dev`` that syncs it, both in subprocesses; ready once the app's
    ``<prefix>/steps`` function runs."""
    server_port, app_port = free_port(), free_port()
    server = f"http://127.0.0.1:{server_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    env = {**os.environ, "INNGEST_DEV": "1", "INNGEST_BASE_URL": server}
    procs: list[subprocess.Popen[bytes]] = []
    sender = inngest.Inngest(
        app_id=f"{app_id}-test-sender",
        is_production=False,
        api_base_url=server,
        event_api_base_url=server,
    )
    try:
        procs.append(subprocess.Popen(app_command(app_port), cwd=ROOT, env=env))
        # Up before the server starts, so that its first ping already syncs the app.
        wait_until_up(app_url, procs[0])
        procs.append(
            start_dev_server(app_url, server_port, workdir / "dev.db", "--retry-backoff", "0.2")
        )
        wait_until_up(f"{server}/health", procs[1])
        servers = OfficialServers(server, sender, prefix, app_id)
        deadline = time.monotonic() + 20
        while True:  # the server pings the app (every 5 s), which syncs its functions back
            probe = servers.send(f"{prefix}/steps", {"n": 0})
            if servers.runs(probe):
                break
            assert time.monotonic() < deadline, "the app never synced"
            time.sleep(0.2)
        yield servers
    finally:
        # The official client has no close(); its sync httpx client would leak a socket.
        sender._http_client._http_client_sync.close()
        for proc in reversed(procs):
            stop(proc)


@contextlib.contextmanager
def on_uvicorn(app: Any, **options: Any) -> Iterator[int]:
    """``app`` on uvicorn in a thread, on a free loopback port, with ``options`` of
    ``uvicorn.Config``; the port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", **options)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.01)
    try:
        yield port
    finally:
        running.should_exit = True
        thread.join(10)
