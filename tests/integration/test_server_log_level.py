"""``mainspring dev --log-level``: the engine's own log lines follow it, not only uvicorn's.

At "info" (the default) a run's end is logged; at "warning" it is not, while a failed run,
a problem, still is. uvicorn's access log shows only under "debug"."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import httpx
import pytest

import mainspring as inngest
from mainspring.cli import build_parser
from mainspring.cli.serve import LOG_LEVELS, uvicorn_log_level
from tests.e2e.support import ROOT, free_port, stop, wait_until_up

client = inngest.Client(app_id="log-level")


@client.create_function(fn_id="ok", trigger=inngest.TriggerEvent(event="log/ok"))
async def ok(ctx: inngest.Context) -> str:
    return "fine"


@client.create_function(fn_id="bad", trigger=inngest.TriggerEvent(event="log/bad"), retries=0)
async def bad(ctx: inngest.Context) -> None:
    raise inngest.NonRetriableError("broken on purpose")


functions = [ok, bad]


def server_output(tmp_path: pathlib.Path, *options: str) -> str:
    """Run both functions once on ``mainspring dev`` with ``options``; its log."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mainspring.cli",
                "dev",
                "tests.integration.test_server_log_level:functions",
                "--db",
                str(tmp_path / "log.db"),
                "--port",
                str(port),
                *options,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/health", proc)
            sent = httpx.post(f"{url}/e/key", json=[{"name": "log/ok"}, {"name": "log/bad"}])
            event_ids = sent.json()["ids"]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                runs = [httpx.get(f"{url}/v1/events/{e}/runs").json()["data"] for e in event_ids]
                if all(r and r[0]["ended_at"] is not None for r in runs):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"the runs did not end: {runs}")
            time.sleep(0.2)  # the lines of the runs' ends, written after their commits
        finally:
            stop(proc)
    return log_path.read_text()


def test_info_logs_each_runs_end_and_no_requests(tmp_path: pathlib.Path) -> None:
    output = server_output(tmp_path)  # the default
    assert "completed: log-level-ok" in output
    assert "failed: log-level-bad" in output
    assert "POST /e/key" not in output


def test_warning_keeps_only_the_problems(tmp_path: pathlib.Path) -> None:
    output = server_output(tmp_path, "--log-level", "warning")
    assert "completed: log-level-ok" not in output
    assert "failed: log-level-bad" in output


def test_debug_adds_uvicorns_access_log(tmp_path: pathlib.Path) -> None:
    output = server_output(tmp_path, "--log-level", "debug")
    assert "POST /e/key" in output
    assert "completed: log-level-ok" in output


@pytest.mark.parametrize(
    ("level", "uvicorn"),
    [("debug", "debug"), ("info", "warning"), ("warning", "warning"), ("error", "error")],
)
def test_uvicorn_logs_from_warning_up_but_under_debug(level: str, uvicorn: str) -> None:
    assert level in LOG_LEVELS
    assert uvicorn_log_level(level) == uvicorn


@pytest.mark.parametrize("given", ["warning", "WARNING", "Warning"])
def test_the_level_is_taken_in_any_case(given: str) -> None:
    args = build_parser().parse_args(["dev", "--log-level", given])
    assert args.log_level == "warning"


def test_an_unknown_level_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["dev", "--log-level", "loud"])
    assert exit_info.value.code == 2
    assert "'debug', 'info', 'warning', 'error', 'critical'" in capsys.readouterr().err
