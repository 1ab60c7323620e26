"""The official ``inngest`` SDK (0.5.19) on ``mainspring dev`` across deploys that drop a
function and bring it back (issue: deploys, rule 4), over real loopback HTTP.

A run of ``napper`` (``official_deploy_app.py``) sleeps; the app restarts without napper,
and the dev server, which asks every known app to sync again every ``--poll-interval``
seconds as the reference dev server does, learns that napper is gone. The sleep ends: the
run is held, and says so, naming the function and the app. The dev server is SIGKILLed
and restarted: the run is still held. The app restarts with napper again; the next poll
syncs it and the run completes.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.e2e.support import ROOT, free_port, start_dev_server, stop, wait_until_up

pytestmark = pytest.mark.slow

#: As in official_deploy_app.py (not imported here: the official SDK warns on import, and
#: the suite turns warnings into errors).
APP_ID = "official-deploy"
NAP_SECONDS = 5.0
NAPPER = f"{APP_ID}-napper"
GROUPED = f"{APP_ID}-grouped"
RETRY_SECONDS = 4
POLL = "0.3"


class Servers:
    def __init__(self, tmp: pathlib.Path) -> None:
        self.port, self.app_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_url = f"http://127.0.0.1:{self.app_port}/api/inngest"
        self.db = tmp / "dev.db"
        self.procs: list[subprocess.Popen[bytes]] = []

    def app(self, *, with_napper: bool, version: int = 1) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "INNGEST_DEV": "1",
            "INNGEST_BASE_URL": self.url,
            "OFFICIAL_DEPLOY_WITHOUT_NAPPER": "0" if with_napper else "1",
            "OFFICIAL_DEPLOY_VERSION": str(version),
        }
        command = [sys.executable, "-m", "uvicorn", "tests.e2e.official_deploy_app:app"]
        command += ["--port", str(self.app_port), "--log-level", "warning"]
        proc = subprocess.Popen(command, cwd=ROOT, env=env)
        self.procs.append(proc)
        wait_until_up(self.app_url, proc)
        return proc

    def server(self) -> subprocess.Popen[bytes]:
        options = ("--poll-interval", POLL, "--retry-backoff", "0.2")
        proc = start_dev_server(self.app_url, self.port, self.db, *options)
        self.procs.append(proc)
        wait_until_up(f"{self.url}/health", proc)
        return proc

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", timeout=5).json()

    def functions(self) -> list[str] | None:
        answer = httpx.get(f"{self.url}/v1/apps/{APP_ID}/functions", timeout=5)
        if answer.status_code == 404:
            return None
        return sorted(f["id"] for f in answer.json()["data"]["functions"])

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/v1/runs/{run_id}")["data"]
        return found


def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.05)


def held(run: dict[str, Any]) -> dict[str, Any] | None:
    waiting: dict[str, Any] | None = run.get("waiting_for")
    return waiting if waiting and waiting.get("waiting_for") == "function" else None


@contextmanager
def servers(tmp: pathlib.Path) -> Iterator[Servers]:
    found = Servers(tmp)
    try:
        yield found
    finally:
        for proc in reversed(found.procs):
            stop(proc)


def test_a_run_held_while_an_official_app_lacks_its_function_completes_once_it_is_back(
    tmp_path: pathlib.Path,
) -> None:
    with servers(tmp_path) as s:
        v1 = s.app(with_napper=True)
        server = s.server()
        until("the first sync", lambda: s.functions() == [GROUPED, NAPPER, f"{APP_ID}-other"])
        sent = httpx.post(f"{s.url}/e/key", json={"name": "deploy/nap", "data": {}}, timeout=5)
        [event_id] = sent.json()["ids"]
        [run] = until("the run", lambda: s.get(f"/v1/events/{event_id}/runs")["data"])
        run_id = run["run_id"]
        until(
            "the nap",
            lambda: any(j["kind"] == "sleep" for j in s.get(f"/v1/runs/{run_id}/jobs")["data"]),
        )

        # A deploy without napper: the poll syncs it, napper is gone; the nap ends.
        stop(v1)
        v2 = s.app(with_napper=False)
        until("the sync without napper", lambda: s.functions() == [GROUPED, f"{APP_ID}-other"])
        waiting = until("the hold", lambda: held(s.run(run_id)), timeout=NAP_SECONDS + 10)
        assert s.run(run_id)["status"] == "Running"
        assert waiting["function"] == NAPPER
        assert waiting["app"] == APP_ID
        assert f"function {NAPPER!r} of app {APP_ID!r} is not registered" in (waiting["message"])

        # The server dies while the run is held, and comes back: still held.
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        s.server()
        assert held(s.run(run_id)) == waiting

        # The deploy that brings napper back: the poll syncs it, and the run completes.
        stop(v2)
        s.app(with_napper=True)
        done = until("the end", lambda: (r := s.run(run_id))["status"] != "Running" and r)
        assert done["status"] == "Completed", done
        assert done["output"] == [1, 2]


def test_a_group_member_renamed_while_it_waits_to_retry_completes_with_the_new_one(
    tmp_path: pathlib.Path,
) -> None:
    """Rule 1 with the official SDK: its call targeted at the old member skips the new one
    and returns a short tuple; the server does not take that as the run's output, drops the
    old member and asks again, so the new member runs and the run completes with it."""
    with servers(tmp_path) as s:
        v1 = s.app(with_napper=True)
        s.server()
        until("the first sync", lambda: GROUPED in (s.functions() or []))
        sent = httpx.post(f"{s.url}/e/key", json={"name": "deploy/group", "data": {}}, timeout=5)
        [event_id] = sent.json()["ids"]
        [run] = until("the run", lambda: s.get(f"/v1/events/{event_id}/runs")["data"])
        run_id = run["run_id"]
        until(
            "p2's retry",
            lambda: any(
                j["kind"] == "plan" and j["attempt"] == 1
                for j in s.get(f"/v1/runs/{run_id}/jobs")["data"]
            ),
        )
        stop(v1)
        s.app(with_napper=True, version=2)
        done = until(
            "the end",
            lambda: (r := s.run(run_id))["status"] != "Running" and r,
            timeout=RETRY_SECONDS + 15,
        )
        assert done["status"] == "Completed", done
        assert done["output"] == ["one", "new"]
