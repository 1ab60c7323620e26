"""Debounce (protocol §10): a burst of events makes one run, with the latest event.

Each event creates its run and files it as the key's pending run, due ``period`` later;
the run it replaces is recorded as skipped (naming the event that replaced it). Only
the first event's time is kept, so ``timeout`` caps how long the key's run may be put off.
The pending run's start gate closes the hold (:func:`close`): from then on it runs, and a
new event starts a new debounce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow import skips
from mainspring.engine.flow.keys import key_value
from mainspring.engine.records import Hold, HoldKind
from mainspring.engine.store.contract import Tx
from mainspring.protocol.codes import ErrorCode
from mainspring.sdk.flow import Debounce


def hold_key(function_id: str, debounce: Debounce, event: Mapping[str, Any]) -> str:
    return f"{function_id}:{key_value(debounce.key, event)}"


def schedule(
    tx: Tx,
    function_id: str,
    debounce: Debounce,
    event: Mapping[str, Any],
    run_id: str,
    now: int,
) -> tuple[int, str | None]:
    """File ``run_id`` as its key's pending run: when it is due, and the run it replaced
    (now skipped), if any."""
    key = hold_key(function_id, debounce, event)
    first = now
    replaced = None
    pending = tx.get_hold(HoldKind.DEBOUNCE, key)
    if pending is not None and pending.run_id != run_id:
        first = pending.since
        why = skips.reason(
            "Debounced",
            ErrorCode.DEBOUNCE_REPLACED,
            f"debounced: replaced by a later event ({event.get('id')}) that started run {run_id}",
        )
        if skips.skip(tx, pending.run_id, why, now):
            replaced = pending.run_id
    due = now + debounce.period_ms()
    timeout = debounce.timeout_ms()
    if timeout is not None:
        due = min(due, first + timeout)
    tx.put_hold(Hold(HoldKind.DEBOUNCE, key, run_id, first))
    return max(due, now), replaced


def close(tx: Tx, run_id: str) -> bool:
    """The pending run starts: later events debounce anew. False if it was replaced."""
    return tx.close_hold(HoldKind.DEBOUNCE, run_id)
