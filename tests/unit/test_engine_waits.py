"""The engine's reading of a sleep's wake time (``engine/waits.py``): an ISO date, as
other SDKs send ``sleep_until`` in the op's name, or a time string."""

from __future__ import annotations

import datetime

import pytest

from mainspring.engine.waits import MAX_WAIT_MS, wake_time
from mainspring.protocol.durations import DurationError

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", ms(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))),
        ("2026-01-02T03:04:05.250Z", NOW + 97_445_250),
        ("2026-01-02T03:04:05+02:00", NOW + 97_445_000 - 7_200_000),
        # A date and time without a zone is UTC, not the machine's local time.
        ("2026-01-02T03:04:05", NOW + 97_445_000),
        # Ten characters exactly: a date.
        ("2026-01-02", NOW + 86_400_000),
        ("1h", NOW + 3_600_000),
        ("1h30m15s10ms", NOW + 5_415_010),  # long, yet not a date
        ("366d", NOW + MAX_WAIT_MS),
    ],
)
def test_wake_time(text: str, expected: int) -> None:
    assert wake_time(text, NOW) == expected


def test_a_wake_time_that_is_neither_is_an_error() -> None:
    with pytest.raises(DurationError, match="tomorrow-ish"):
        wake_time("tomorrow-ish", NOW)


def test_the_cap_is_366_days() -> None:
    assert MAX_WAIT_MS == 366 * 86_400_000
