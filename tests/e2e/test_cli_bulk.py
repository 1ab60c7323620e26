"""``mainspring cancel --function F`` and ``mainspring rerun ID ID ...`` against a real
``mainspring dev`` (serving ``tests/e2e/cli_bulk_app.py``): the progress moves run by run,
every matching run is cancelled, queued and sleeping ones alike, and no run outside the
window is touched, including runs created while the command works."""

from __future__ import annotations

import datetime
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support import FINISHED, free_port, stop, wait_until_up

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    database = tmp_path_factory.mktemp("bulk") / "dev.db"
    command = ["dev", "tests.e2e.cli_bulk_app:functions", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mainspring.cli", *command, "--db", str(database)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        yield url
    finally:
        stop(proc)


def cli(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MAINSPRING_URL": url, "COLUMNS": "200"}
    env.pop("FORCE_COLOR", None)  # stderr is a pipe here: progress comes as lines
    return subprocess.Popen(
        [sys.executable, "-m", "mainspring.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = proc.communicate(stdin, timeout=120)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def send(url: str, name: str, count: int, **data: Any) -> list[str]:
    """Event ids of ``count`` events sent in one request."""
    body = [{"name": name, "data": {"n": n, **data}} for n in range(count)]
    ids: list[str] = httpx.post(f"{url}/e/dev", json=body, timeout=30).json()["ids"]
    assert len(ids) == count
    return ids


def runs(url: str, function: str) -> dict[str, str]:
    """Every run of ``function``: id to status."""
    found: dict[str, str] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"function_id": function, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{url}/v1/runs", params=params, timeout=30).json()
        found.update({run["run_id"]: run["status"] for run in page["data"]})
        cursor = page["cursor"]
        if not cursor:
            return found


def settle(url: str, function: str, count: int, statuses: Collection[str]) -> dict[str, str]:
    """Waits until ``function`` has ``count`` runs, all in ``statuses``."""
    deadline = time.monotonic() + 30
    while True:
        found = runs(url, function)
        if len(found) == count and set(found.values()) <= set(statuses):
            return found
        assert time.monotonic() < deadline, (len(found), set(found.values()))
        time.sleep(0.1)


def progress(err: str, total: int) -> list[int]:
    """The counts the progress lines showed, in order."""
    return [int(n) for n in re.findall(rf"(\d+)/{total}$", err, re.M)]


def instant() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_cancelling_a_functions_sleeping_runs_in_a_window(server: str) -> None:
    send(server, "bulk/nap", 20)  # before the window
    before = settle(server, "cli-bulk-nap", 20, {"Running"})
    time.sleep(0.05)
    window_start = instant()
    time.sleep(0.05)
    send(server, "bulk/nap", 150)
    inside = set(settle(server, "cli-bulk-nap", 170, {"Running"})) - set(before)
    assert len(inside) == 150

    proc = cli(server, "cancel", "--function", "cli-bulk-nap", "--from", window_start)
    assert proc.stderr is not None
    # The listing is done once the first progress line is out: runs created from now on
    # are outside the window, however long the cancelling takes.
    first = proc.stderr.readline()
    assert first.strip() == "Cancelling 150 runs of cli-bulk-nap: 0/150", first
    send(server, "bulk/nap", 10)
    code, out, err = finish(proc)
    assert code == 0, err

    counts = progress(first + err, 150)
    assert counts[0] == 0
    assert counts[-1] == 150
    assert counts == sorted(set(counts)), counts  # it only moves forward
    assert len(counts) >= 10, counts  # and it moved along the way, not in one jump
    assert f"Cancelled 150 runs of cli-bulk-nap queued from {window_start} until now (" in out
    assert set(re.findall(r"^  (\w{26})$", out, re.M)) == inside

    after = settle(server, "cli-bulk-nap", 180, {"Running", "Cancelled"})
    assert {run for run, status in after.items() if status == "Cancelled"} == inside
    later = set(after) - set(before) - inside
    assert len(later) == 10
    assert {after[run] for run in later} == {"Running"}  # created while it worked
    assert {after[run] for run in before} == {"Running"}  # before the window
    # The other function triggered by the same events: untouched.
    assert set(settle(server, "cli-bulk-bystander", 180, {"Running"}).values()) == {"Running"}


def test_cancelling_reaches_queued_runs(server: str) -> None:
    send(server, "bulk/throttled", 30)
    # The throttle starts one run an hour: one sleeps, the others stay queued.
    deadline = time.monotonic() + 30
    while sorted(runs(server, "cli-bulk-throttled").values()) != ["Queued"] * 29 + ["Running"]:
        assert time.monotonic() < deadline, runs(server, "cli-bulk-throttled")
        time.sleep(0.1)
    code, out, err = finish(cli(server, "cancel", "--function", "cli-bulk-throttled"))
    assert code == 0, err
    assert "Cancelled 30 runs of cli-bulk-throttled" in out
    assert progress(err, 30)[-1] == 30
    assert set(runs(server, "cli-bulk-throttled").values()) == {"Cancelled"}


def test_nothing_to_cancel_and_an_unknown_function(server: str) -> None:
    code, out, _ = finish(cli(server, "cancel", "--function", "cli-bulk-quick", "--from", "1m"))
    assert code == 0
    assert "No unfinished runs of cli-bulk-quick queued from" in out
    code, _, err = finish(cli(server, "cancel", "--function", "cli-bulk-typo"))
    assert code == 1
    assert "no function 'cli-bulk-typo' on this server" in err
    assert "cli-bulk-nap" in err  # the functions it has


def test_rerunning_several_runs_moves_a_bar(server: str) -> None:
    send(server, "bulk/quick", 4)
    originals = sorted(settle(server, "cli-bulk-quick", 4, FINISHED))
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    code, out, err = finish(
        cli(server, "rerun", *originals[:2], missing, "-"), "\n".join(originals[2:])
    )
    assert code == 1, err  # one of them does not exist: said, and the others rerun
    assert progress(err, 5) == [0, 1, 2, 3, 4, 5]
    assert f"rerun of {missing}: POST /v1/runs/{missing}/rerun: 404" in err
    reruns = dict(re.findall(r"^Rerun of (\w{26}): new run (\w{26})$", out, re.M))
    assert sorted(reruns) == originals
    after = settle(server, "cli-bulk-quick", 8, FINISHED)
    assert set(reruns.values()) <= set(after)
    assert set(after.values()) == {"Completed"}
