"""The generic cell rate algorithm (GCRA), pure: throttles, rate limits, idempotency keys.

A key's state is one number, its theoretical arrival time (TAT): when the next run would
be due if runs came exactly at the allowed rate. A run may go when that time, less the
tolerance the burst allows, is not in the future; it then moves the TAT one emission
interval (``period / limit``) on. Past its TAT a cell means nothing, so it expires there.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` per ``period_ms``, up to ``capacity`` of them at once."""

    limit: int
    period_ms: int
    capacity: int

    @property
    def emission_ms(self) -> float:
        return self.period_ms / self.limit

    @classmethod
    def throttle(cls, limit: int, period_ms: int, burst: int) -> Rate:
        """A throttle: ``burst`` runs may start at once (1, the default, means none)."""
        return cls(limit, period_ms, max(burst, 1))

    @classmethod
    def rate_limit(cls, limit: int, period_ms: int) -> Rate:
        """A rate limit, whose burst is a tenth of its limit (protocol §10)."""
        return cls(limit, period_ms, limit // 10 + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: The cell's new TAT when allowed (store it, expiring then); else unchanged.
    tat: int
    #: When a run could next go (now, when allowed).
    retry_at: int


def decide(rate: Rate, tat: int | None, now: int) -> Decision:
    """Whether a run may go now, given the key's stored TAT (None: never used/expired)."""
    base = now if tat is None or tat < now else tat
    new_tat = base + rate.emission_ms
    allow_at = new_tat - rate.emission_ms * rate.capacity
    if allow_at > now:
        return Decision(False, now if tat is None else tat, int(-(-allow_at // 1)))
    return Decision(True, int(-(-new_tat // 1)), now)
