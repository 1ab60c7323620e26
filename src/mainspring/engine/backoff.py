"""How long to wait before retrying a failed attempt."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

#: The reference server's schedule, indexed by the attempt that failed (protocol §6.2).
DEFAULT_SCHEDULE = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0)
_MAX_JITTER = 30.0

Backoff = Callable[[int], float]
"""Seconds to wait after attempt ``n`` (0-based) failed."""


def default_backoff(attempt: int) -> float:
    base = DEFAULT_SCHEDULE[min(attempt, len(DEFAULT_SCHEDULE) - 1)]
    return base + random.uniform(0, _MAX_JITTER)


def backoff_from(value: Backoff | Sequence[float] | float | None) -> Backoff:
    """Accept a function, a schedule of seconds (last entry repeats) or a fixed delay."""
    if value is None:
        return default_backoff
    if callable(value):
        return value
    if isinstance(value, int | float):
        fixed = float(value)
        return lambda attempt: fixed
    schedule = tuple(float(v) for v in value)
    if not schedule:
        raise ValueError("retry_backoff: the schedule is empty")
    return lambda attempt: schedule[min(attempt, len(schedule) - 1)]
