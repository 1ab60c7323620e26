"""Idempotency keys (protocol §10): at most one run per key value per 24 h, which the
reference implements as a rate limit of 1 per 24 h on the key. A second event with the same
key inside the window starts nothing; its run is recorded as skipped, naming the run that
took the key. (Separate from the event-``id`` dedupe, which holds forever.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow import skips
from mainspring.engine.flow.gcra import Rate, decide
from mainspring.engine.flow.keys import key_value
from mainspring.engine.store.contract import Tx
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import ErrorPayload

WINDOW_MS = 86_400_000
_RATE = Rate(limit=1, period_ms=WINDOW_MS, capacity=1)


def check(
    tx: Tx,
    function_id: str,
    expression: str,
    event: Mapping[str, Any],
    run_id: str,
    now: int,
) -> ErrorPayload | None:
    """None if the key is free (it is then taken by ``run_id`` for 24 h); else the reason."""
    value = key_value(expression, event)
    key = f"idempotency:{function_id}:{value}"
    cell = tx.get_cell(key, now)
    decision = decide(_RATE, None if cell is None else cell[0], now)
    if decision.allowed:
        tx.put_cell(key, decision.tat, run_id, decision.tat)
        return None
    holder = "" if cell is None or cell[1] is None else f" by run {cell[1]}"
    return skips.reason(
        "IdempotencyKeyUsed",
        ErrorCode.IDEMPOTENCY_KEY_USED,
        f"idempotency key {expression} = {value!r} was already used{holder} in the last "
        f"24h; it is free again from {skips.moment(decision.retry_at)}",
    )
