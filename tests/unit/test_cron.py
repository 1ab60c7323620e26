"""Cron schedules that cannot work are refused when parsed, naming the schedule."""

from __future__ import annotations

import pytest

from mainspring.protocol.cron import CronError, parse_cron


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("0 0 31 2 *", "never fires"),
        ("TZ=America 0 * * * *", "unknown time zone"),
        ("TZ=" + "x" * 300 + " 0 * * * *", "unknown time zone"),
        ("61 * * * *", "out of range"),
        ("* * * *", "expected 5 fields"),
    ],
)
def test_a_cron_that_cannot_work_is_refused(source: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem):
        parse_cron(source)


def test_a_zoned_cron_parses() -> None:
    assert parse_cron("TZ=Europe/Paris 0 9 * * *").expression == "0 9 * * *"
