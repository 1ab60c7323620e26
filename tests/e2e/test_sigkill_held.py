"""SIGKILL an embedded engine while a run is held for its missing function (issue:
deploys, rule 4): the hold is in the store, so the run is still held after the restart,
with the same deadline, and resumes when a start brings the function back; a grace period
that ends while no engine runs fails the run at the next start.

The engine process is ``held_sigkill_app.py`` (its docstring says what it prints). A run of
``napper`` (step ``a``, a 1.5 s durable sleep, step ``b``) is killed while it sleeps; the
next processes serve only ``other``, as a deploy that dropped ``napper``.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e import held_sigkill_app as app
from tests.e2e.sigkill_support import Incarnation, now_ms

pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(app.__file__)
TIMEOUT = 30.0


@contextmanager
def incarnation(tmp: pathlib.Path, number: int, mode: str) -> Iterator[Incarnation]:
    proc = Incarnation(SCRIPT, tmp, number, mode)
    try:
        yield proc
    finally:
        proc.cleanup()


def said(proc: Incarnation, word: str) -> list[str]:
    """The words of the first line ``proc`` printed that starts with ``word``."""

    def lines() -> list[list[str]]:
        return [ln.split() for ln in proc.output().splitlines() if ln.startswith(f"{word} ")]

    proc.wait_until(f"a {word!r} line", lambda: bool(lines()), TIMEOUT)
    return lines()[0]


def finished(proc: Incarnation) -> tuple[str, Any]:
    """Wait for the process to exit; the run's final status and output (or error)."""
    assert proc.finish(TIMEOUT) == 0, proc.output()
    line = next(ln for ln in proc.output().splitlines() if ln.startswith("done "))
    _, status, result = line.split(" ", 2)
    return status, json.loads(result)


def query(tmp: pathlib.Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the database of a dead engine."""
    db = sqlite3.connect(f"file:{tmp / 'engine.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def effects(tmp: pathlib.Path) -> list[str]:
    """The steps that ran, in order (``step pid`` lines)."""
    return [ln.split()[0] for ln in (tmp / app.EFFECTS_FILE).read_text().splitlines()]


def sleep_until(epoch_ms: int) -> None:
    time.sleep(max(0.0, (epoch_ms - now_ms()) / 1000 + 0.05))


def killed_while_sleeping(tmp: pathlib.Path) -> str:
    """Incarnation 1: the run, killed while it sleeps; returns once its nap is due."""
    with incarnation(tmp, 1, "start") as proc:
        [_, run_id] = said(proc, "sleeping")
        proc.sigkill()
    [(due,)] = query(tmp, "SELECT run_at FROM jobs WHERE run_id = ? AND kind = 'sleep'", run_id)
    sleep_until(due)
    return run_id


def held_then_killed(tmp: pathlib.Path, number: int, mode: str, run_id: str) -> tuple[int, int]:
    """An incarnation without napper: the run is held; SIGKILL; the hold is stored."""
    with incarnation(tmp, number, mode) as proc:
        [_, held_run, since, until] = said(proc, "held")
        proc.sigkill()
    assert held_run == run_id
    rows = query(tmp, "SELECT run_id, function_id, app, since, until FROM held_runs")
    assert rows == [(run_id, app.NAPPER, app.APP_ID, int(since), int(until))]
    # Its call job waits at the deadline: the deadline is a job, not a timer.
    jobs = query(tmp, "SELECT kind, run_at FROM jobs WHERE run_id = ?", run_id)
    assert jobs == [("discover", int(until))]
    return int(since), int(until)


def test_a_held_run_survives_sigkill_and_resumes_when_its_function_is_back(
    tmp_path: pathlib.Path,
) -> None:
    run_id = killed_while_sleeping(tmp_path)
    since, until = held_then_killed(tmp_path, 2, "without", run_id)
    assert until - since == app.GRACE_MS
    # Killed again while held: still held after the restart, not held anew.
    assert held_then_killed(tmp_path, 3, "without", run_id) == (since, until)
    with incarnation(tmp_path, 4, "with") as proc:
        assert finished(proc) == ("Completed", [1, 2])
    assert query(tmp_path, "SELECT * FROM held_runs") == []
    assert effects(tmp_path) == ["a", "b"]  # a ran once, before the kills


def test_a_grace_period_that_ended_while_no_engine_ran_fails_the_run_at_the_next_start(
    tmp_path: pathlib.Path,
) -> None:
    run_id = killed_while_sleeping(tmp_path)
    since, until = held_then_killed(tmp_path, 2, "without-short", run_id)
    assert until - since == app.SHORT_GRACE_MS
    sleep_until(until)
    with incarnation(tmp_path, 3, "without-short") as proc:
        status, error = finished(proc)
    assert status == "Failed"
    assert error["name"] == "FunctionNotFoundError"
    message = error["message"]
    assert f"function {app.NAPPER!r} of app {app.APP_ID!r} was not registered for 2s" in message
    assert query(tmp_path, "SELECT * FROM held_runs") == []
    assert query(tmp_path, "SELECT * FROM jobs WHERE run_id = ?", run_id) == []
    assert effects(tmp_path) == ["a"]
