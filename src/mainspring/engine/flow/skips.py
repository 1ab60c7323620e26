"""What flow control tells users about a run: why it was skipped, and what it waits for.

A run turned away gets status ``Skipped``, the reason as its error and one history entry
saying the same, so a user can see why an event started nothing (on the event's runs, the
run itself and its history). A run held back shows a ``Waiting`` entry at the end of its
history while it waits (built by the engine from the admission's state and the run's
holds: :func:`describe_hold`)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import orjson

from mainspring.engine.records import Hold, HoldKind, RunStatus
from mainspring.engine.store.contract import Tx
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import ErrorPayload
from mainspring.sdk.flow import FlowConfig

#: ``op`` of the history entry of a skipped run, of a held one, and their step id.
SKIPPED_OP = "Skipped"
WAITING_OP = "Waiting"
FLOW_STEP_ID = "flow"


def moment(ms: int | None) -> str:
    """An epoch-ms time as users read it (ISO 8601, UTC, to the millisecond)."""
    if ms is None:
        return "an unknown time"
    at = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reason(name: str, code: ErrorCode, message: str) -> ErrorPayload:
    return ErrorPayload(name=name, message=message, code=code.value)


def skip(tx: Tx, run_id: str, why: ErrorPayload, now: int) -> bool:
    """Finish a run that never started as skipped; False if it had finished already."""
    error = orjson.dumps(why.to_wire())
    finished = tx.finish_run(
        run_id, RunStatus.SKIPPED, output=None, error=error, at=now, grouped=False
    )
    if not finished:
        return False
    tx.record_attempt(
        run_id,
        FLOW_STEP_ID,
        attempt=0,
        after_seq=0,
        user_id="",
        op=SKIPPED_OP,
        started_at=now,
        ended_at=now,
        error=error,
    )
    return True


def describe_hold(
    flow: FlowConfig, holds: Sequence[Hold], start_at: int | None
) -> dict[str, Any] | None:
    """What a run waits for when it is an open batch or a pending debounce."""
    for hold in holds:
        if hold.kind is HoldKind.BATCH and flow.batch_events is not None:
            batch = flow.batch_events
            until = hold.since + batch.timeout_ms()
            return {
                "waiting_for": "batch",
                "key": hold.key,
                "events": hold.size,
                "max_size": batch.max_size,
                "since": hold.since,
                "until": until,
                "message": (
                    f"batch filling: {hold.size} of {batch.max_size} events; it starts when "
                    f"full or at {moment(until)}"
                ),
            }
        if hold.kind is HoldKind.DEBOUNCE and flow.debounce is not None:
            return {
                "waiting_for": "debounce",
                "key": hold.key,
                "since": hold.since,
                "until": start_at,
                "message": (
                    f"debounced: starts at {moment(start_at)} unless another event for "
                    "the same key comes first"
                ),
            }
    return None
