"""The ``mainspring`` client commands against a real ``mainspring dev`` (a subprocess serving
``tests/e2e/cli_app.py``), each run as a user would, asserting on what it prints.

Also: ``mainspring dev MODULE:attr`` imports MODULE from the current directory, and says
clearly what is wrong when it cannot.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import mainspring
from tests.e2e.support import FINISHED, free_port, stop, wait_until_up

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = pathlib.Path(__file__).with_name("cli_app.py")
#: The installed console script (it does not put the current directory on sys.path, as
#: ``python -m`` does).
SCRIPT = pathlib.Path(sys.executable).with_name("mainspring")


def cli(url: str, *args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAINSPRING_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mainspring.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(url: str, *args: str) -> str:
    done = cli(url, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def failed(url: str, *args: str, code: int = 1) -> str:
    done = cli(url, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    database = tmp_path_factory.mktemp("cli") / "dev.db"
    command = ["dev", "tests.e2e.cli_app:functions", "--port", str(port), "--db", str(database)]
    proc = subprocess.Popen([sys.executable, "-m", "mainspring.cli", *command], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        yield url
    finally:
        stop(proc)


def sent_id(stdout: str) -> str:
    found = re.search(r"event (\w{26})", stdout)
    assert found, stdout
    return found.group(1)


def runs_of(url: str, event_id: str, *, finished: bool = True) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        runs: list[dict[str, Any]] = httpx.get(f"{url}/v1/events/{event_id}/runs").json()["data"]
        if runs and (not finished or all(r["status"] in FINISHED for r in runs)):
            return runs
        assert time.monotonic() < deadline, runs
        time.sleep(0.1)


def send_and_finish(url: str, name: str, data: str = "{}") -> dict[str, Any]:
    [run] = runs_of(url, sent_id(ok(url, "send", name, "--data", data)))
    return run


def test_version() -> None:
    done = cli("http://127.0.0.1:1", "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"mainspring {mainspring.__version__}"


def test_an_unreachable_server_is_named_with_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    err = failed(url, "runs")
    assert url in err
    assert "mainspring dev" in err
    assert len(err.strip().splitlines()) == 1


def test_send_then_events_lists_it(server: str) -> None:
    event_id = sent_id(ok(server, "send", "cli/parallel", "--data", '{"user": 7}'))
    listed = ok(server, "events", "--name", "cli/parallel")
    assert event_id in listed
    assert '{"user":7}' in listed
    [raw] = [e for e in json.loads(ok(server, "events", "--json")) if e["internal_id"] == event_id]
    assert raw["data"] == {"user": 7}


@pytest.mark.parametrize(
    ("data", "message"),
    [("{bad", "the body is not valid JSON"), ("[1, 2]", "data: must be a JSON object")],
)
def test_a_malformed_event_shows_the_servers_400(server: str, data: str, message: str) -> None:
    err = failed(server, "send", "cli/parallel", "--data", data)
    assert "400" in err
    assert message in err


def test_run_shows_parallel_steps_in_lanes(server: str) -> None:
    run = send_and_finish(server, "cli/parallel")
    shown = ok(server, "run", run["run_id"])
    assert run["run_id"] in shown
    assert "Completed" in shown
    assert '["prepared","left","right"]' in shown
    lanes = {}
    for line in shown.splitlines():
        row = re.match(r"\s*(\d+)\s+(prepare|left-branch|right-branch)\s", line)
        if row:
            lanes[row.group(2)] = row.group(1)
    assert set(lanes) == {"prepare", "left-branch", "right-branch"}, shown
    assert lanes["left-branch"] != lanes["right-branch"]  # they ran side by side


def test_run_shows_a_failure_with_its_traceback(server: str) -> None:
    run = send_and_finish(server, "cli/failing")
    shown = ok(server, "run", run["run_id"])
    assert "Failed" in shown
    assert "charge-card" in shown
    assert "ValueError: the card was declined" in shown
    assert 'raise ValueError("the card was declined")' in shown  # the traceback


def test_run_of_an_unknown_id_is_one_line(server: str) -> None:
    err = failed(server, "run", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert "404" in err
    assert "run not found" in err


def test_cancel_one_run(server: str) -> None:
    [run] = runs_of(server, sent_id(ok(server, "send", "cli/slow")), finished=False)
    assert f"Cancelled run {run['run_id']}" in ok(server, "cancel", run["run_id"])
    assert "Cancelled" in ok(server, "run", run["run_id"])
    assert "nothing to cancel" in ok(server, "cancel", run["run_id"])


def test_usage_errors_exit_2(server: str) -> None:
    assert "--status" in failed(server, "runs", "--status", "bogus", code=2)
    assert "--from" in failed(server, "runs", "--from", "yesterday", code=2)
    assert "give a run id" in failed(server, "cancel", code=2)


# -- on the routes of GET /v1/runs, /v1/functions, /v1/apps, cancellations and reruns ----


def test_runs_lists_and_filters(server: str) -> None:
    done = send_and_finish(server, "cli/parallel")
    bad = send_and_finish(server, "cli/failing")
    listed = ok(server, "runs")
    assert done["run_id"] in listed
    assert bad["run_id"] in listed
    assert "Completed" in listed
    assert "Failed" in listed
    only_failed = json.loads(ok(server, "runs", "--status", "failed", "--json", "--limit", "500"))
    assert bad["run_id"] in {r["run_id"] for r in only_failed}
    assert {r["status"].lower() for r in only_failed} == {"failed"}
    of_fn = ok(server, "runs", "--function", "cli-test-parallel", "--from", "1h")
    assert done["run_id"] in of_fn
    assert bad["run_id"] not in of_fn


def test_runs_stops_at_the_limit(server: str) -> None:
    for _ in range(3):
        send_and_finish(server, "cli/failing")
    three = json.loads(ok(server, "runs", "--limit", "3", "--json"))
    assert len({r["run_id"] for r in three}) == 3


def test_cancel_a_functions_runs_in_a_time_range(server: str) -> None:
    ids = [sent_id(ok(server, "send", "cli/slow")) for _ in range(3)]
    run_ids = {runs_of(server, event_id, finished=False)[0]["run_id"] for event_id in ids}
    shown = ok(server, "cancel", "--function", "cli-test-slow", "--from", "10m", "--until", "now")
    assert re.search(r"Cancelled \d+ runs of cli-test-slow", shown)
    assert run_ids <= set(shown.split())
    for run_id in run_ids:
        assert httpx.get(f"{server}/v1/runs/{run_id}").json()["data"]["status"] == "Cancelled"


def test_functions_and_apps(server: str) -> None:
    functions = ok(server, "functions")
    for fn in ("cli-test-parallel", "cli-test-failing", "cli-test-slow"):
        assert fn in functions
    assert "cli/parallel" in functions  # its trigger
    assert "cli-test" in ok(server, "apps")
    assert isinstance(json.loads(ok(server, "functions", "--json")), list)


def test_rerun_and_rerun_from_a_step(server: str) -> None:
    run = send_and_finish(server, "cli/parallel")
    shown = ok(server, "rerun", run["run_id"])
    new_id = re.search(r"new run (\w{26})", shown)
    assert new_id, shown
    assert new_id.group(1) != run["run_id"]
    shown = ok(server, "rerun", run["run_id"], "--from-step", "left-branch")
    assert "from step left-branch" in shown


# -- mainspring dev MODULE:attr, from the current directory ------------------------------


def dev_in(
    workdir: pathlib.Path, spec: str, port: int, *, stderr: int | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SCRIPT), "dev", spec, "--port", str(port), "--db", str(workdir / "dev.db")],
        cwd=workdir,
        stderr=stderr,
    )


@pytest.mark.parametrize("attr", ["functions", "client"])
def test_dev_imports_the_module_from_the_current_directory(
    tmp_path: pathlib.Path, attr: str
) -> None:
    shutil.copy(APP, tmp_path / "shop_app.py")
    port = free_port()
    proc = dev_in(tmp_path, f"shop_app:{attr}", port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        assert send_and_finish(url, "cli/failing")["status"] == "Failed"
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:functions", "no module 'no_such_module' in"),
        ("shop_app:nothing", "module 'shop_app' has no attribute 'nothing'"),
        ("shop_app:_work", "not a list of mainspring functions or a mainspring.Client"),
        ("shop_app", "expected MODULE:ATTR"),
    ],
)
def test_dev_says_what_is_wrong_with_module_attr(
    tmp_path: pathlib.Path, spec: str, message: str
) -> None:
    shutil.copy(APP, tmp_path / "shop_app.py")
    proc = dev_in(tmp_path, spec, free_port(), stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=30)
    err = stderr.decode()
    assert proc.returncode == 1
    assert message in err
    assert "Traceback" not in err
