"""Flow control at schedule time: what becomes of a run an event starts, inside the
intake's store unit, in the order of protocol §10: event-``id`` dedupe (the run's
idempotency key), rate limit and idempotency key, debounce, singleton; then the run is
queued. Batching replaces all of that for the events it takes (:mod:`.batching`).

Invocations (``inngest/function.invoked``) are neither batched nor debounced: a parent
waits for exactly this child. When a run that an invoke started is skipped, its parent is
told at once (an ``inngest/function.finished`` with the reason as the error) instead of
waiting until its invoke times out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from mainspring.engine import finished
from mainspring.engine.flow import batching, debounce, idempotency, rate_limit, singleton, skips
from mainspring.engine.records import Job, StoredEvent
from mainspring.engine.store.contract import NewRun, Tx
from mainspring.protocol import consts
from mainspring.protocol.messages import ErrorPayload
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function

#: Records internal events in a unit (the engine's ``emit``); returns jobs to queue.
Emit = Callable[[Tx, Sequence[Event]], list[Job]]


@dataclasses.dataclass(slots=True)
class Outcome:
    """What scheduling one run did, for the engine to apply once the unit commits."""

    #: A run to adopt and its first job to queue (may be due later: debounce, batch).
    created: tuple[NewRun, Job] | None = None
    #: Runs finished as skipped (the new one, or a pending one a debounce replaced).
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: Other jobs written: a singleton holder's cancellation, a parent told of a skip.
    jobs: list[Job] = dataclasses.field(default_factory=list)
    #: Jobs moved to another time (a filled batch's start): replace queued copies.
    moved: list[Job] = dataclasses.field(default_factory=list)


def decides(function: Function[Any]) -> bool:
    """Whether the function's runs need :func:`schedule` (a control that acts when a run
    is created); functions with only concurrency limits or a priority need nothing here."""
    flow = function.config.flow
    return (
        flow.rate_limit is not None
        or flow.idempotency is not None
        or flow.debounce is not None
        or flow.batch_events is not None
        or flow.singleton is not None
        or flow.throttle is not None
    )


def _gated(function: Function[Any]) -> bool:
    flow = function.config.flow
    return flow.throttle is not None or flow.debounce is not None


def schedule(
    tx: Tx,
    function: Function[Any],
    run: NewRun,
    start: Job,
    event: StoredEvent,
    now: int,
    emit: Emit,
) -> Outcome:
    """Create (or skip, batch, debounce) the run ``event`` starts for ``function``."""
    flow = function.config.flow
    wire = event.to_wire()
    invoked = event.name == consts.FUNCTION_INVOKED_EVENT
    outcome = Outcome()
    if flow.batch_events is not None and not invoked and batching.batches(flow.batch_events, wire):
        added = batching.add(tx, function.id, flow.batch_events, event, run, start, now)
        if added is not None:
            outcome.created = added.opened
            if added.filled is not None:
                outcome.moved.append(added.filled)
        return outcome
    run = dataclasses.replace(run, admitted=not _gated(function))
    if not tx.create_run(run):
        return outcome  # the same event id started this function already
    why = _turned_away(tx, function, wire, run.run_id, now, invoked)
    job = start
    if why is None and flow.debounce is not None and not invoked:
        due, replaced = debounce.schedule(tx, function.id, flow.debounce, wire, run.run_id, now)
        if replaced is not None:
            outcome.skipped.append(replaced)
        job = dataclasses.replace(start, run_at=due)
    if why is None and flow.singleton is not None:
        why, cancel = singleton.claim(tx, function.id, flow.singleton, wire, run.run_id, now)
        if cancel is not None:
            outcome.jobs.append(cancel)
    if why is not None:
        skips.skip(tx, run.run_id, why, now)
        outcome.skipped.append(run.run_id)
        if invoked:
            outcome.jobs.extend(_tell_parent(tx, function, run, wire, why, emit))
        return outcome
    tx.enqueue(job)
    outcome.created = (run, job)
    return outcome


def _turned_away(
    tx: Tx,
    function: Function[Any],
    event: dict[str, Any],
    run_id: str,
    now: int,
    invoked: bool,
) -> ErrorPayload | None:
    """Why the rate limit or the idempotency key skips the run, if they do."""
    flow = function.config.flow
    if invoked:
        return None  # an invoke is a direct call: its parent waits for this very run
    if flow.rate_limit is not None:
        why = rate_limit.check(tx, function.id, flow.rate_limit, event, run_id, now)
        if why is not None:
            return why
    if flow.idempotency is not None:
        return idempotency.check(tx, function.id, flow.idempotency, event, run_id, now)
    return None


def _tell_parent(
    tx: Tx,
    function: Function[Any],
    run: NewRun,
    event: dict[str, Any],
    why: ErrorPayload,
    emit: Emit,
) -> list[Job]:
    """Finish the parent's invoke of a skipped child with the reason."""
    if finished.correlation_id(event) is None:
        return []
    data = finished.finished_data(function.id, run.run_id, [event], "Skipped", None, why.to_wire())
    return emit(tx, [Event(name=consts.FUNCTION_FINISHED_EVENT, data=data)])
