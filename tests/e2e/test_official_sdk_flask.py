"""Compatibility: the official ``inngest`` Python SDK (0.5.19) served by **Flask** as a real
client of ``mainspring dev``.

One ``mainspring dev`` server and one Flask app (``tests/e2e/official_flask_app.py``, served
by ``inngest.flask.serve`` on werkzeug's threaded WSGI server via ``flask run``) are shared by
the whole module. All the app's functions are synchronous (``inngest.ContextSync``), so the
SDK runs them through its sync code path (``CommHandler.post_sync``, ``StepSync``,
``GroupSync``). The server pings the app, the app syncs back to ``POST /fn/register``, and
every test sends events (over plain HTTP or with the official client's ``send_sync``) and
polls the REST API for the runs' final status and output.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import inngest
import pytest

# Scenarios both official-SDK apps run, written once; collected here, with this module's
# `servers` fixture.
from tests.e2e.official_scenarios import *  # noqa: F403
from tests.e2e.support import OfficialServers, free_port, stop, wait_until_up

ROOT = pathlib.Path(__file__).resolve().parents[2]


Servers = OfficialServers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    server_port, app_port = free_port(), free_port()
    server = f"http://127.0.0.1:{server_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    env = {**os.environ, "INNGEST_DEV": "1", "INNGEST_BASE_URL": server}
    procs: list[subprocess.Popen[bytes]] = []
    sender = inngest.Inngest(
        app_id="official-flask-test-sender",
        is_production=False,
        api_base_url=server,
        event_api_base_url=server,
    )
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "tests.e2e.official_flask_app:app",
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(app_port),
                    "--with-threads",
                    "--no-reload",
                    "--no-debugger",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        # Up before the server starts, so that its first ping already syncs the app.
        wait_until_up(app_url, procs[0])
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mainspring.cli",
                    "dev",
                    "-u",
                    app_url,
                    "--port",
                    str(server_port),
                    "--db",
                    str(tmp_path_factory.mktemp("official-flask") / "dev.db"),
                    "--retry-backoff",
                    "0.2",
                ],
                cwd=ROOT,
            )
        )
        wait_until_up(f"{server}/health", procs[1])
        servers = Servers(server, sender, "flask", "official-flask-app")
        deadline = time.monotonic() + 20
        while True:  # the server pings the app (every 5 s), which syncs its functions back
            probe = servers.send("flask/steps", {"n": 0})
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


# --- step.run ------------------------------------------------------------------------------


@pytest.mark.slow
def test_step_run_sequence(servers: Servers) -> None:
    run = servers.finished_run(servers.send_official("flask/steps", {"n": 4}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 5, "b": 10, "c": "10!", "attempt": 0}
    assert run["error"] is None


@pytest.mark.slow
def test_step_error_caught_after_retries(servers: Servers) -> None:
    # retries=1 and a 0.2 s backoff: attempt 0 reports StepError, attempt 1 (the last)
    # StepFailed, which the SDK raises in the function as a StepError it catches. That last
    # call is a new queue item, whose attempt counter restarts at 0 (protocol: attempts are
    # per queue item).
    run = servers.finished_run(servers.send("flask/step-error", {}))
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "caught": "ValueError",
        "message": "boom at attempt 1",
        "attempt": 0,
    }


# --- send_event ----------------------------------------------------------------------------
