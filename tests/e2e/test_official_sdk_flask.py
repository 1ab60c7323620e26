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

import pathlib
import sys
from collections.abc import Iterator

import pytest

# Scenarios both official-SDK apps run, written once; collected here, with this module's
# `servers` fixture.
from tests.e2e.official_scenarios import *  # noqa: F403
from tests.e2e.support import OfficialServers, official_servers

ROOT = pathlib.Path(__file__).resolve().parents[2]


Servers = OfficialServers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    def app(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.e2e.official_flask_app:app",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--with-threads",
            "--no-reload",
            "--no-debugger",
        ]

    workdir = tmp_path_factory.mktemp("official-flask")
    with official_servers(app, workdir, prefix="flask", app_id="official-flask-app") as servers:
        yield servers


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
