"""Time strings (protocol §1.3): ``"300ms"``, ``"2h45m"``, ``"1d"``, ``"1w"``.

Parsing accepts every unit the server accepts; formatting emits the largest whole unit,
as the reference SDK does (``60s`` becomes ``"1m"``).
"""

from __future__ import annotations

import datetime
import re

_UNIT_MS = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "s": 1_000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
    "w": 604_800_000.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")


class DurationError(ValueError):
    """A duration that is not a time string, a whole number of milliseconds or a timedelta."""


class DurationTooLongError(DurationError):
    """A time string longer than any schedule can be (see :data:`MAX_DURATION_MS`)."""


def parse_duration_ms(text: str) -> float:
    """Parse a time string into milliseconds; raises :class:`DurationError` naming it."""
    stripped = text.strip()
    pos = 0
    total = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if not stripped or pos != len(stripped):
        raise DurationError(
            f"invalid duration {text!r}: expected a time string such as '30s', '5m', '2h45m', '1d'"
        )
    if total > MAX_DURATION_MS:
        raise DurationTooLongError(
            f"invalid duration {text[:40]!r}: longer than any schedule can be"
        )
    return total


#: Far longer than anything a server can schedule (Go's duration type holds ~292 years;
#: callers check their own ranges): past it, a time string is an error rather than
#: infinity or an overflow.
MAX_DURATION_MS = 10**15


def to_ms(value: int | float | datetime.timedelta | str) -> float:
    """Milliseconds from an int/float of ms, a timedelta or a time string."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds() * 1000.0
    if isinstance(value, str):
        return parse_duration_ms(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DurationError(f"invalid duration {value!r}: expected milliseconds or a timedelta")
    return float(value)


def format_duration(value: int | float | datetime.timedelta | str) -> str:
    """The largest whole unit: ``"Nw"``, ``"Nd"``, ``"Nh"``, ``"Nm"``, ``"Ns"`` or ``"Nms"``."""
    ms = to_ms(value)
    if ms < 0:
        raise DurationError(f"invalid duration {value!r}: must not be negative")
    whole = round(ms)
    if abs(ms - whole) > 1e-6:
        raise DurationError(f"invalid duration {value!r}: not a whole number of milliseconds")
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_UNIT_MS[unit])
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}ms"
