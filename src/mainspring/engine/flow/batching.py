"""Batching (protocol §10): events gather into one run, which starts when ``max_size`` of
them are in or ``timeout`` after the first, per ``key`` value.

The open batch *is* its run: created with the first event (status ``Queued``), its start
job due at the timeout, and a hold that later events find. Each event is appended to the
run's stored events and filed under it (``run_events``, which also dedupes event ids), in
the intake's unit, so nothing buffered can be lost. The event that fills the batch closes
it and makes its start job due now; otherwise the start gate closes it at the timeout.
Events for which ``if`` is false do not batch: they run alone at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow.keys import key_value
from mainspring.engine.records import Hold, HoldKind, Job, StoredEvent
from mainspring.engine.store.contract import NewRun, Tx
from mainspring.protocol.expressions import compile_expression
from mainspring.sdk.flow import Batch


def batches(batch: Batch, event: Mapping[str, Any]) -> bool:
    """Whether the event joins a batch (``if`` true or absent)."""
    return batch.if_exp is None or compile_expression(batch.if_exp).matches({"event": event})


@dataclasses.dataclass(slots=True)
class Added:
    """What adding one event did."""

    #: The batch it opened (a new run and its start job), if it opened one.
    opened: tuple[NewRun, Job] | None = None
    #: The start job of the batch it filled, now due, if it filled one.
    filled: Job | None = None


def add(
    tx: Tx,
    function_id: str,
    batch: Batch,
    event: StoredEvent,
    run: NewRun,
    start: Job,
    now: int,
) -> Added | None:
    """File ``event`` into its key's open batch, or open one with ``run``; None if the
    function already batched an event with this id."""
    wire = event.to_wire()
    key = f"{function_id}:{key_value(batch.key, wire)}"
    hold = tx.get_hold(HoldKind.BATCH, key)
    target = run.run_id if hold is None else hold.run_id
    if not tx.add_run_event(f"{function_id}:{event.id}", event.internal_id, target):
        return None
    if hold is None:
        opened = dataclasses.replace(
            run, idempotency_key=f"{function_id}:batch:{run.run_id}", admitted=False
        )
        tx.create_run(opened)
        tx.put_hold(Hold(HoldKind.BATCH, key, run.run_id, now, 1))
        due = dataclasses.replace(start, run_at=now + batch.timeout_ms())
        tx.enqueue(due)
        return Added(opened=(opened, due))
    size = tx.append_run_event(hold.run_id, event.wire_json(), key)
    if size < batch.max_size:
        return Added()
    tx.close_hold(HoldKind.BATCH, hold.run_id)
    filled = Job(id=f"{hold.run_id}-start", run_id=hold.run_id, kind=start.kind, run_at=now)
    tx.reschedule_job(filled.id, run_at=now, attempt=0)
    return Added(filled=filled)


def close(tx: Tx, run_id: str) -> None:
    """The batch's run starts (its timeout came): later events open a new batch."""
    tx.close_hold(HoldKind.BATCH, run_id)
