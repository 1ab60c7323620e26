"""Argument types of the client commands: times, statuses, limits.

Each raises :class:`argparse.ArgumentTypeError`, so that argparse names the option and
stops with exit code 2.
"""

from __future__ import annotations

import argparse
import datetime

from mainspring.protocol.durations import DurationError, parse_duration_ms

#: Run statuses as the REST API and the CLI spell them.
STATUSES = ("Queued", "Running", "Completed", "Failed", "Cancelled", "Skipped")
_STATUS_BY_LOWER = {status.lower(): status for status in STATUSES}


def parse_time(text: str, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """An instant, in UTC: RFC 3339 (``2025-01-31T12:00:00Z``; no zone means UTC),
    ``now``, or a duration ago (``1h``, ``30m``, ``2d``, ``1h30m``, with an optional
    ``ago`` or a leading ``-``)."""
    now = now if now is not None else datetime.datetime.now(datetime.UTC)
    stripped = text.strip()
    if stripped.lower() == "now":
        return now
    relative = stripped.removesuffix("ago").strip().removeprefix("-").strip()
    if relative:
        try:
            ago_ms = parse_duration_ms(relative)
        except DurationError:
            pass
        else:
            return now - datetime.timedelta(milliseconds=ago_ms)
    try:
        parsed = datetime.datetime.fromisoformat(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time (2025-01-31T12:00:00Z) or a duration ago "
            f"(1h, 30m, 2d), got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def rfc3339(instant: datetime.datetime) -> str:
    """``instant`` as the server reads it: UTC, milliseconds, ``Z``."""
    utc = instant.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def time_arg(text: str) -> str:
    """An argparse type: a time option's value as an RFC 3339 string for the server."""
    return rfc3339(parse_time(text))


def status_arg(text: str) -> str:
    """A run status, in any case (``failed``, ``FAILED``): as the REST API spells it."""
    status = _STATUS_BY_LOWER.get(text.strip().lower())
    if status is None:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(STATUSES)} (any case), got {text!r}"
        )
    return status


def limit_arg(text: str) -> int:
    """A positive whole number."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)
