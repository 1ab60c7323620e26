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
from typing import Any

import httpx
import inngest
import pytest

from tests.e2e.support import FINISHED, OfficialServers, free_port, stop, wait_until_up

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
        servers = Servers(server, sender)
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


# --- parallel ------------------------------------------------------------------------------


@pytest.mark.slow
def test_parallel_wait(servers: Servers) -> None:
    run = servers.finished_run(servers.send("flask/parallel.wait", {}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"first": "first", "group": ["p1", "p2", "p3"], "last": "after 3"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("event", "output"),
    [
        ("flask/parallel.race", {"group": ["fast", "slow"], "last": "last"}),
        # The sleep is re-reported by the discovery call that follows the fast branch.
        ("flask/parallel.race.sleep", {"group": ["fast", None]}),
    ],
    ids=["two-runs", "run-and-sleep"],
)
def test_parallel_race(servers: Servers, event: str, output: dict[str, Any]) -> None:
    run = servers.finished_run(servers.send(event, {}))
    assert run["status"] == "Completed", run
    assert run["output"] == output


# --- sleep and wait_for_event --------------------------------------------------------------


@pytest.mark.slow
def test_sleep(servers: Servers) -> None:
    run = servers.finished_run(servers.send("flask/sleep", {}))
    assert run["status"] == "Completed", run
    assert 0.9 <= run["output"]["slept"] < 5.0, run


@pytest.mark.slow
def test_wait_for_event_match(servers: Servers) -> None:
    event_id = servers.send("flask/wait", {"timeout_s": 15, "token": "t-42"})
    # The pause exists only once the SDK has answered; until the run finishes, keep sending
    # a non-matching reply followed by the matching one (bounded by the run's timeout).
    deadline = time.monotonic() + 10
    seq = 0
    while not servers.runs(event_id) or servers.runs(event_id)[0]["status"] not in FINISHED:
        assert time.monotonic() < deadline, servers.runs(event_id)
        seq += 1
        answer = httpx.post(
            f"{servers.url}/e/key",
            json=[
                {"name": "flask/wait.reply", "data": {"token": "other", "seq": seq}},
                {"name": "flask/wait.reply", "data": {"token": "t-42", "seq": seq}},
            ],
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        time.sleep(0.3)
    run = servers.finished_run(event_id)
    assert run["status"] == "Completed", run
    got = run["output"]["got"]
    assert got is not None, run
    assert got["name"] == "flask/wait.reply"
    assert got["data"]["token"] == "t-42"
    assert 1 <= got["data"]["seq"] <= seq


@pytest.mark.slow
def test_wait_for_event_timeout(servers: Servers) -> None:
    started = time.monotonic()
    run = servers.finished_run(servers.send("flask/wait", {"timeout_s": 1, "token": "t-0"}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"got": None}
    assert time.monotonic() - started >= 0.9


# --- invoke --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("x", "output"),
    [
        (3, {"result": {"doubled": 6}}),
        (-1, {"caught": "NonRetriableError", "message": "negative x: -1"}),
    ],
    ids=["success", "failure-caught"],
)
def test_invoke(servers: Servers, x: int, output: dict[str, Any]) -> None:
    run = servers.finished_run(servers.send_official("flask/invoke", {"x": x}))
    assert run["status"] == "Completed", run
    assert run["output"] == output


# --- errors --------------------------------------------------------------------------------


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


@pytest.mark.slow
def test_non_retriable_error_fails_the_run_at_once(servers: Servers) -> None:
    # retries=3: a retriable error would take three more attempts; this one must not.
    run = servers.finished_run(servers.send("flask/non-retriable", {}), timeout=8)
    assert run["status"] == "Failed", run
    assert run["output"] is None
    assert run["error"]["name"] == "NonRetriableError"
    assert run["error"]["message"] == "give up at attempt 0"


@pytest.mark.slow
def test_on_failure_handler_runs_with_the_failure_event(servers: Servers) -> None:
    run = servers.finished_run(servers.send("flask/failing", {"who": "bob"}))
    assert run["status"] == "Failed", run
    assert run["error"]["name"] == "ValueError"
    assert run["error"]["message"] == "failed for bob"
    deadline = time.monotonic() + 10
    failed: list[dict[str, Any]] = []
    while not failed:
        assert time.monotonic() < deadline, "no inngest/function.failed event for the run"
        events = httpx.get(
            f"{servers.url}/v1/events", params={"name": "inngest/function.failed"}, timeout=5
        ).json()["data"]
        failed = [e for e in events if e["data"].get("run_id") == run["run_id"]]
        time.sleep(0.1)
    [event] = failed
    handler = servers.finished_run(event["internal_id"])
    assert handler["function_id"] == "official-flask-app-failing-failure"
    assert handler["status"] == "Completed", handler
    assert handler["output"] == {
        "event": "inngest/function.failed",
        "function_id": "official-flask-app-failing",
        "run_id": run["run_id"],
        "error": "failed for bob",
        "original": {"who": "bob"},
    }


# --- send_event ----------------------------------------------------------------------------


@pytest.mark.slow
def test_step_send_event_starts_another_function(servers: Servers) -> None:
    run = servers.finished_run(servers.send_official("flask/send", {"v": 9}))
    assert run["status"] == "Completed", run
    [sent] = run["output"]
    receiver = servers.finished_run(sent)
    assert receiver["function_id"] == "official-flask-app-receiver"
    assert receiver["status"] == "Completed", receiver
    assert receiver["output"] == {"received": {"from": run["run_id"], "v": 9}}
