"""Rate limit (protocol §10): GCRA at schedule time; a run over the limit is skipped and
the skip recorded. ``period`` is at most 24 h; the burst is a tenth of the limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow import skips
from mainspring.engine.flow.gcra import Rate, decide
from mainspring.engine.flow.keys import key_value, scoped
from mainspring.engine.store.contract import Tx
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.durations import format_duration
from mainspring.protocol.messages import ErrorPayload
from mainspring.sdk.flow import RateLimit


def check(
    tx: Tx,
    function_id: str,
    limit: RateLimit,
    event: Mapping[str, Any],
    run_id: str,
    now: int,
) -> ErrorPayload | None:
    """None if the run may go (its cell is then updated); else why it is skipped."""
    key = scoped("rate", function_id, limit.key, event)
    period = limit.period_ms()
    cell = tx.get_cell(key, now)
    decision = decide(Rate.rate_limit(limit.limit, period), None if cell is None else cell[0], now)
    if decision.allowed:
        tx.put_cell(key, decision.tat, run_id, decision.tat)
        return None
    where = "" if limit.key is None else f" for {limit.key} = {key_value(limit.key, event)!r}"
    rate = Rate.rate_limit(limit.limit, period)
    spacing = format_duration(max(1, round(rate.emission_ms)))
    return skips.reason(
        "RateLimited",
        ErrorCode.RATE_LIMITED,
        f"rate limit of {limit.limit} per {format_duration(period)}{where} reached (runs are "
        f"spread evenly: one every {spacing}, up to {rate.capacity} at once); the next run "
        f"may start from {skips.moment(decision.retry_at)}",
    )
