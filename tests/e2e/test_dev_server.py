"""``mainspring dev`` end to end over real loopback HTTP: an in-process example module, and
an app on uvicorn that the server asks to sync (``-u``)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

import mainspring as inngest
from tests.e2e.support import free_port, start_dev_server, stop, wait_until_up

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_outputs(server: str, event_id: str, count: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = httpx.get(f"{server}/v1/events/{event_id}/runs").json()["data"]
        if len(runs) == count and all(r["status"] == "Completed" for r in runs):
            return sorted((r["output"] for r in runs), key=repr)
        time.sleep(0.1)
    raise AssertionError(f"runs did not complete: {runs}")


@pytest.mark.slow
def test_dev_server_with_an_in_process_module(tmp_path: pathlib.Path) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mainspring.cli",
            "dev",
            "examples.seed:functions",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "dev.db"),
        ],
        cwd=ROOT,
    )
    try:
        wait_until_up(f"{server}/health", proc)
        sent = httpx.post(f"{server}/e/any-key", json={"name": "my-event", "data": {"user_id": 7}})
        assert sent.status_code == 200, sent.text
        [event_id] = sent.json()["ids"]
        assert run_outputs(server, event_id, 1) == [[True, "email sent to user 7"]]
        # The SDK's own client reaches the event API the same way.
        sender = inngest.Client(app_id="sender", is_production=False, event_api_base_url=server)
        [sent_id] = sender.send_sync(inngest.Event(name="my-event", data={"user_id": 8}))
        assert run_outputs(server, sent_id, 1) == [[True, "email sent to user 8"]]
    finally:
        stop(proc)


@pytest.mark.slow
def test_dev_server_syncs_and_calls_an_app_over_http(tmp_path: pathlib.Path) -> None:
    server_port, app_port = free_port(), free_port()
    server = f"http://127.0.0.1:{server_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    env = {**os.environ, "MAINSPRING_DEV": "1", "MAINSPRING_API_BASE_URL": server}
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.e2e.http_app:app",
            "--port",
            str(app_port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    dev = start_dev_server(app_url, server_port, tmp_path / "dev.db")
    try:
        wait_until_up(f"{server}/health", dev)
        wait_until_up(app_url, app)
        deadline = time.monotonic() + 20
        while True:  # the server pings the app, which syncs its functions back
            sent = httpx.post(
                f"{server}/e/key", json={"name": "app/greet", "data": {"name": "ada"}}
            )
            [event_id] = sent.json()["ids"]
            if httpx.get(f"{server}/v1/events/{event_id}/runs").json()["data"]:
                break
            assert time.monotonic() < deadline, "the app never synced"
            time.sleep(0.2)
        assert run_outputs(server, event_id, 2) == [
            "ADA",
            {"name": "Ada", "said": ["hello Ada", "bye Ada"]},
        ]
    finally:
        for proc in (dev, app):
            stop(proc)
