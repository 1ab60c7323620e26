"""Time as the engine sees it: the system clock, or a manual one tests move by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...

    async def wait(self, wake: asyncio.Event, until_ms: int) -> None:
        """Return when ``wake`` is set or the clock reaches ``until_ms``, whichever first."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def wait(self, wake: asyncio.Event, until_ms: int) -> None:
        delay = (until_ms - self.now_ms()) / 1000
        if delay <= 0:
            return
        # A timer that sets the event is much cheaper than asyncio.wait_for's extra task.
        timer = asyncio.get_running_loop().call_later(delay, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()


class ManualClock:
    """A clock that only moves when told: ``clock.advance(seconds)``.

    Timers, retries and sleeps due at or before the new time fire at once, so a test can
    cover a three-day sleep in milliseconds. Call it from the engine's event loop.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = int(time.time() * 1000) if start_ms is None else start_ms
        self._waiters: set[asyncio.Event] = set()

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)
        for event in self._waiters:
            event.set()

    async def wait(self, wake: asyncio.Event, until_ms: int) -> None:
        if self._now >= until_ms:
            return
        self._waiters.add(wake)
        try:
            await wake.wait()
        finally:
            self._waiters.discard(wake)
