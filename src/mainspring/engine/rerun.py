"""Reruns: a new run of a run's function with the same triggering events (all of a batch's),
from the start or from one of its steps.

Rerun from a step, the new run starts with the recorded results of every step the
original run recorded before that step copied in, under the same hashed ids and memos: the
SDK replays them without running them, and that step and everything after it run fresh.
"Before" is the order of the original run's stack (the order results were recorded); a
step that only failed attempts (a run cancelled while it was retrying) counts from its
first failure.

The new run is an explicit action, not an event: it passes none of the schedule-time flow
control (rate limit, idempotency key, debounce, batching, singleton) nor a throttle, and
has no idempotency key; concurrency limits, cancel conditions and timeouts apply as to any
run. Where it came from is filed with it (:class:`~mainspring.engine.records.RerunOrigin`,
``Engine.rerun_origin``). Everything is written in one store unit: the run, its copied
steps, its origin and its first job land together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import ulid

from mainspring.engine import deadlines
from mainspring.engine.clock import Clock
from mainspring.engine.intake import cancel_pauses
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import Job, JobKind, RerunOrigin
from mainspring.engine.store.contract import NewRun, Store, Tx
from mainspring.errors import MainspringError, RunNotFoundError
from mainspring.sdk.function import Function


async def rerun(
    *,
    store: Store,
    functions: Mapping[str, Function[Any]],
    clock: Clock,
    queue: JobQueue,
    run_id: str,
    from_step: str | None = None,
) -> str:
    """Start a rerun of ``run_id`` (see the module); returns the new run's id.

    Raises :class:`~mainspring.RunNotFoundError` for an unknown run, and
    :class:`~mainspring.MainspringError` naming the problem for a function that is no
    longer registered or a ``from_step`` the run never recorded.
    """
    if from_step is not None and (not isinstance(from_step, str) or not from_step):
        raise MainspringError("from_step: must be a non-empty step id")
    state = await store.load_run_state(run_id)
    if state is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    original = state.run
    function = functions.get(original.function_id)
    if function is None:
        raise MainspringError(
            f"cannot rerun run {run_id!r}: its function {original.function_id!r} is no longer "
            "registered"
        )
    events = orjson.loads(state.events_json)
    if not events:
        raise MainspringError(f"cannot rerun run {run_id!r}: it has no triggering event")
    now = clock.now_ms()
    new = NewRun(
        run_id=str(ulid.ULID()),
        function_id=function.id,
        event_id=original.event_id,
        events_json=state.events_json,
        idempotency_key=None,
        max_attempts=function.config.max_attempts,
        created_at=now,
    )
    start = Job(id=f"{new.run_id}-start", run_id=new.run_id, kind=JobKind.START, run_at=now)
    cancels = cancel_pauses(function, new.run_id, events[0], now) if function.config.cancel else []
    deadline = deadlines.start_deadline(function, new)

    def unit(tx: Tx) -> list[Job]:
        copied = 0
        if from_step is not None:
            position = tx.step_position(run_id, from_step)
            if position is None:
                raise MainspringError(
                    f"cannot rerun run {run_id!r} from step {from_step!r}: the run never "
                    "recorded that step (name it by its id, as the function wrote it, or by "
                    "its hashed id)"
                )
        if not tx.create_run(new):
            raise MainspringError(f"cannot rerun run {run_id!r}: the new run id is taken")
        if from_step is not None:
            copied = tx.copy_steps(run_id, new.run_id, before=position, at=now)
            if copied and state.request_version != -1:
                # The copied memos were keyed the way that run's SDK said it hashes ids.
                tx.update_run(new.run_id, request_version=state.request_version)
        tx.record_rerun(RerunOrigin(new.run_id, run_id, from_step, copied, now))
        jobs = [start] if tx.enqueue(start) else []
        for pause in cancels:
            tx.create_pause(pause)
        if deadline is not None and tx.enqueue(deadline):
            jobs.append(deadline)
        return jobs

    # Not adopted by the executor: the run's first job loads it, copied steps included.
    for job in await store.transact(unit):
        queue.push(job)
    return new.run_id


def origin_text(origin: RerunOrigin) -> str:
    """``rerun of <run id>[ from step <s>]``, as pages and the CLI show it."""
    text = f"rerun of {origin.original_id}"
    return text if origin.from_step is None else f"{text} from step {origin.from_step}"
