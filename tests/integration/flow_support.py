"""Helpers shared by the flow-control scenarios: a log of step calls with their times, and
polling until a condition holds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import mainspring as inngest


class Spans:
    """Start and end (monotonic seconds) of every step handler call, by label."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    async def step(self, label: str, group: str = "", seconds: float = 0.03) -> str:
        """An async step body: counts how many of ``group`` run at once."""
        start = self._enter(group)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._leave(label, group, start)
        return label

    def step_sync(self, label: str, group: str = "", seconds: float = 0.03) -> str:
        start = self._enter(group)
        try:
            time.sleep(seconds)
        finally:
            self._leave(label, group, start)
        return label

    def _enter(self, group: str) -> float:
        with self._lock:
            now = self._open.get(group, 0) + 1
            self._open[group] = now
            self.peak[group] = max(self.peak.get(group, 0), now)
        return time.monotonic()

    def _leave(self, label: str, group: str, start: float) -> None:
        with self._lock:
            self._open[group] -= 1
            self.spans.append((label, start, time.monotonic()))

    def overlaps(self) -> list[tuple[str, str]]:
        """Pairs of calls that ran at the same time."""
        ordered = sorted(self.spans, key=lambda s: s[1])
        return [
            (a[0], b[0]) for i, a in enumerate(ordered) for b in ordered[i + 1 :] if b[1] < a[2]
        ]


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def runs_of(engine: inngest.Engine, event_ids: list[str]) -> list[inngest.Run]:
    """The one run each event started, in event order."""
    found = []
    for event_id in event_ids:
        [run] = await engine.runs(event_id)
        found.append(run)
    return found


async def all_finished(
    engine: inngest.Engine, runs: list[inngest.Run], timeout: float = 15.0
) -> list[inngest.Run]:
    return [await engine.wait(run.id, timeout=timeout) for run in runs]
