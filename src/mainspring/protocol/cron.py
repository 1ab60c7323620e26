"""Cron schedules: 5-field expressions, optionally prefixed ``TZ=Zone`` (or ``CRON_TZ=``).

Parsing and "next tick after" go through croniter (a maintained cron library) with
zone-aware datetimes, so daylight-saving changes move ticks the way people expect.
``@daily``-style descriptors are refused, as the reference server's validator does.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo

from croniter import croniter


class CronError(ValueError):
    """A cron schedule that does not parse; the message quotes it."""


@dataclasses.dataclass(frozen=True, slots=True)
class CronSchedule:
    source: str
    expression: str
    zone: zoneinfo.ZoneInfo

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (epoch milliseconds)."""
        start = datetime.datetime.fromtimestamp(after_ms / 1000, tz=self.zone)
        tick: datetime.datetime = croniter(self.expression, start).get_next(datetime.datetime)
        return int(tick.timestamp() * 1000)

    def last_at_or_before(self, at_ms: int) -> int:
        """The latest tick at or before ``at_ms``."""
        start = datetime.datetime.fromtimestamp(at_ms / 1000 + 0.001, tz=self.zone)
        tick: datetime.datetime = croniter(self.expression, start).get_prev(datetime.datetime)
        return int(tick.timestamp() * 1000)


def parse_cron(source: str) -> CronSchedule:
    """Parse ``"[TZ=Zone ]m h dom mon dow"``; raises :class:`CronError` naming it."""
    text = source.strip()
    zone = zoneinfo.ZoneInfo("UTC")
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        name = prefix.split("=", 1)[1]
        try:
            zone = zoneinfo.ZoneInfo(name)
        # A zone name that is a folder of the zone database, or too long for the file
        # system, fails as OSError.
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise CronError(f"invalid cron {source!r}: unknown time zone {name!r}") from exc
        text = text.strip()
    if len(text.split()) != 5:
        raise CronError(
            f"invalid cron {source!r}: expected 5 fields (minute hour day month weekday)"
        )
    if not croniter.is_valid(text):
        raise CronError(f"invalid cron {source!r}: a field is out of range or malformed")
    schedule = CronSchedule(source=source, expression=text, zone=zone)
    try:
        schedule.next_after(0)  # e.g. "0 0 31 2 *" (31 February) never comes
    except Exception as exc:  # croniter's CroniterBadDateError and kin
        raise CronError(f"invalid cron {source!r}: it never fires") from exc
    return schedule
