"""The bulk work of ``mainspring cancel --function`` and ``rerun ID ID ...`` against a fake
server: what an interruption leaves alone, runs that finish or vanish before their turn,
listings whose filtered pages come back short, and progress lines off a terminal. (The
same against a real server: ``tests/e2e/test_cli_bulk.py``.)"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mainspring.cli import bulk
from mainspring.cli.client import Answer, CliError, Server


class FakeRuns:
    """A server holding unfinished runs ``r000``, ``r001``, ...: it lists them newest
    first in pages of ``page`` (with empty ``gaps`` pages between, as a CEL filter gives)
    and cancels them on ``DELETE``."""

    def __init__(self, count: int, *, page: int = 1000, gaps: int = 0) -> None:
        self.unfinished = [f"r{n:03d}" for n in range(count)]
        self.page = page
        self.gaps = gaps
        self.listed: list[dict[str, list[str]]] = []
        self.deleted: list[str] = []
        self.finished_first: set[str] = set()
        self.gone: set[str] = set()
        self.interrupt_at: int | None = None
        self.down_at: int | None = None
        self._lock = threading.Lock()

    def __call__(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        parts = urlsplit(target)
        if method == "GET" and parts.path == "/v1/runs":
            return self._list(parse_qs(parts.query))
        if method == "GET" and parts.path == "/v1/functions":
            return _ok({"data": [{"id": "f"}]})
        assert method == "DELETE", target
        run_id = parts.path.rsplit("/", 1)[1]
        with self._lock:
            self.deleted.append(run_id)
            count = len(self.deleted)
        if self.interrupt_at is not None and count == self.interrupt_at:
            raise KeyboardInterrupt
        if self.down_at is not None and count >= self.down_at:
            raise ConnectionRefusedError(111, "Connection refused")
        if self.interrupt_at is not None and count > self.interrupt_at:
            time.sleep(0.05)  # still in flight when the interruption comes in
        if run_id in self.gone:
            return Answer(404, "Not Found", b'{"error":"run not found"}')
        return _ok({"data": {"cancelled": run_id not in self.finished_first}})

    def _list(self, params: dict[str, list[str]]) -> Answer:
        self.listed.append(params)
        newest_first = self.unfinished[::-1]
        start = int(params.get("cursor", ["0"])[0])
        if start < 0:  # an empty page that still has a next one
            following = -start
            return _ok({"data": [], "cursor": str(following)})
        page = newest_first[start : start + self.page]
        following = start + len(page)
        more = following < len(newest_first)
        cursor = (str(-following) if self.gaps else str(following)) if more else None
        return _ok({"data": [{"run_id": run_id} for run_id in page], "cursor": cursor})


def _ok(data: Any) -> Answer:
    return Answer(200, "OK", json.dumps(data).encode())


def cancel_args(**given: Any) -> argparse.Namespace:
    values = {"function": "f", "from_": None, "until": None, "where": None, **given}
    return argparse.Namespace(**values)


def test_a_listing_follows_its_cursor_through_short_and_empty_pages() -> None:
    fake = FakeRuns(25, page=10, gaps=1)
    found = bulk.list_run_ids(Server("http://t", transport=fake), {"function_id": "f"}, "x")
    assert found == [f"r{n:03d}" for n in range(24, -1, -1)]
    assert all(params["function_id"] == ["f"] for params in fake.listed)
    assert len(fake.listed) == 5  # three pages of runs, two empty ones between


def test_every_listed_run_is_cancelled_once_with_progress_at_each_tenth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRuns(25)
    fake.finished_first = {"r003"}
    fake.gone = {"r007"}
    code = bulk.cancel_runs(Server("http://t", transport=fake), cancel_args(), {})
    out, err = capsys.readouterr()
    assert code == 0
    assert sorted(fake.deleted) == fake.unfinished
    counts = [int(line.rsplit(": ", 1)[1].split("/")[0]) for line in err.splitlines()]
    assert counts == [0, 3, 6, 9, 12, 15, 18, 21, 24, 25]
    assert "Cancelled 23 runs of f queued from the first run until now (" in out
    assert "Left alone, finished on their own meanwhile: 1 run\n  r003\n" in out
    assert "No longer on the server: 1 run\n  r007\n" in out
    cancelled = out.split("\nLeft alone")[0].splitlines()[1:]
    assert {line.strip() for line in cancelled} == set(fake.unfinished) - {"r003", "r007"}


def test_an_interrupted_cancel_stops_asking_and_says_how_to_finish(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRuns(200)
    fake.interrupt_at = 20
    code = bulk.cancel_runs(Server("http://t", transport=fake), cancel_args(), {})
    out, err = capsys.readouterr()
    assert code == 130
    # What was in flight finishes; nothing more is asked for.
    assert len(fake.deleted) <= 20 + 2 * bulk.CANCEL_WORKERS
    done = int(out.split("Cancelled ")[1].split(" ")[0])
    assert done == len(fake.deleted) - 1  # all but the interrupted request
    left = 200 - done  # the interrupted request's run among them
    assert f"interrupted with {left} runs left; to cancel them: " in err
    assert "mainspring cancel --function f --until 20" in err  # the window it fixed


def test_a_server_that_goes_away_mid_cancel_gets_the_summary_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRuns(100)
    fake.down_at = 31
    with pytest.raises(CliError, match="cannot reach the mainspring server"):
        bulk.cancel_runs(Server("http://t", transport=fake), cancel_args(from_="2025"), {})
    out, err = capsys.readouterr()
    assert "Cancelled 30 runs of f queued from 2025 until now (" in out
    assert len(out.splitlines()) == 31  # the summary, then each run cancelled
    assert "mainspring: stopped with 70 runs left; to cancel them: " in err
    assert "mainspring cancel --function f --from 2025 --until 20" in err


def test_the_cancel_lists_the_window_asked_for_in_every_unfinished_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRuns(1)
    window = {
        "function_id": "f",
        "from": "2025-01-30T08:00:00.000Z",
        "until": "2025-01-30T09:00:00.000Z",
        "q": "event.data.x == 1",
    }
    args = cancel_args(from_=window["from"], until=window["until"], where=window["q"])
    # A status filter given for a listing is replaced by the unfinished statuses.
    filters = {**window, "status": ["Completed"]}
    assert bulk.cancel_runs(Server("http://t", transport=fake), args, filters) == 0
    assert fake.listed == [
        {
            **{name: [value] for name, value in window.items()},
            "status": ["Queued", "Running"],
            "limit": ["1000"],
        }
    ]
    out = capsys.readouterr().out
    assert (
        "queued from 2025-01-30T08:00:00.000Z until 2025-01-30T09:00:00.000Z, whose event "
        "matches event.data.x == 1" in out
    )


def test_on_a_terminal_the_progress_is_a_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws as on a terminal
    fake = FakeRuns(25, page=10)
    assert bulk.cancel_runs(Server("http://t", transport=fake), cancel_args(), {}) == 0
    out, err = capsys.readouterr()
    assert "Cancelled 25 runs of f" in out
    assert "━" in err  # the bar itself
    assert "25/25" in err
    assert "Cancelling 25 runs of f: 0/25" not in err  # no lines as off a terminal
