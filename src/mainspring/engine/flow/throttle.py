"""Throttle (protocol §10): GCRA on run *starts*. A run over the limit is delayed, never
dropped: it waits (in priority, then arrival order, per key) until the cell lets it go.

The decision and the cell's new state are written in the run's start-gate unit, before
the run's first call, so a restart never lets more runs through than the limit."""

from __future__ import annotations

from mainspring.engine.flow.gcra import Decision, decide
from mainspring.engine.flow.run_flow import Throttled
from mainspring.engine.store.contract import Tx


def admit(tx: Tx, throttled: Throttled, run_id: str, now: int) -> Decision:
    """Let the run start now if the key's cell allows it (and record that it did)."""
    cell = tx.get_cell(throttled.key, now)
    decision = decide(throttled.rate, None if cell is None else cell[0], now)
    if decision.allowed:
        tx.put_cell(throttled.key, decision.tat, run_id, decision.tat)
    return decision
