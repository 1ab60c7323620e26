from __future__ import annotations

import datetime

import pytest

from mainspring.protocol.durations import DurationError, format_duration, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("300ms", 300),
        ("1s", 1000),
        ("2h45m", 9_900_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
        ("1.5s", 1500),
    ],
)
def test_parse(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "5", "five s", "1x", "1s2", "-1s"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration_ms(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (60_000, "1m"),
        (datetime.timedelta(days=2), "2d"),
        (datetime.timedelta(weeks=1), "1w"),
        (90_000, "90s"),
        (1500, "1500ms"),
        ("2h", "2h"),
    ],
)
def test_format_uses_the_largest_whole_unit(
    value: int | datetime.timedelta | str, text: str
) -> None:
    assert format_duration(value) == text


def test_format_rejects_negative_and_garbage() -> None:
    with pytest.raises(DurationError):
        format_duration(-5)
    with pytest.raises(DurationError):
        format_duration(True)


def test_a_time_string_longer_than_any_schedule_is_an_error_not_infinity() -> None:
    with pytest.raises(DurationError, match="longer than any schedule"):
        parse_duration_ms("9" * 400 + "s")
