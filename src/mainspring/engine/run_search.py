"""Searching runs: the filters of ``GET /v1/runs``, the runs page and ``mainspring runs``
(functions, statuses, a creation window) and a CEL expression on each run's triggering
event, over pages of runs newest first.

The filters are SQL (indexed: ``runs_by_function``, ``runs_by_status``, the run id for
the order); the expression is evaluated here, page by page, on the events of the runs each
page read, so no search loads every run. A search whose expression matches rarely stops
after reading :data:`SCAN_LIMIT` runs or spending :data:`SCAN_SECONDS` on them (an
evaluation costs some 25 µs) and answers what it found with a cursor to go on from, so one
request is bounded whatever the number of runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import orjson

from mainspring.engine.records import Run, RunStatus
from mainspring.engine.store.contract import Store
from mainspring.protocol.expressions import Expression

#: The most runs one search reads to evaluate its expression before it answers.
SCAN_LIMIT = 10_000
#: How long one search may spend reading and evaluating before it answers (seconds).
SCAN_SECONDS = 0.05
#: How many runs are read at a time while an expression filters them.
SCAN_PAGE = 500


@dataclasses.dataclass(frozen=True, slots=True)
class RunPage:
    """A page of runs, and the cursor of the next page (None: there is none)."""

    runs: list[Run]
    cursor: str | None


def variables(events: Sequence[Any], *, with_events: bool = True) -> dict[str, Any]:
    """What an expression on a run sees: ``event`` (its first triggering event, wire shape)
    and ``events`` (all of them, for a batch; left out with ``with_events=False``, which
    halves the cost of an evaluation that does not read it)."""
    found = {"event": events[0] if events else {}}
    return {**found, "events": list(events)} if with_events else found


async def matching(store: Store, runs: Sequence[Run], expression: Expression) -> list[Run]:
    """The runs whose triggering events ``expression`` matches (an evaluation error, such
    as a missing field, is no match)."""
    if not runs:
        return []
    stored = await store.triggering_events([run.id for run in runs])
    with_events = "events" in expression.source
    kept = []
    for run in runs:
        raw = stored.get(run.id)
        try:
            events = orjson.loads(raw) if raw is not None else []
        except orjson.JSONDecodeError:
            continue
        found = events if isinstance(events, list) else []
        if expression.matches(variables(found, with_events=with_events)):
            kept.append(run)
    return kept


async def search(
    store: Store,
    *,
    function_ids: Sequence[str] | None = None,
    statuses: Sequence[RunStatus] | None = None,
    created_after: int | None = None,
    created_before: int | None = None,
    expression: Expression | None = None,
    limit: int = 100,
    cursor: str | None = None,
    scan_limit: int = SCAN_LIMIT,
    scan_seconds: float = SCAN_SECONDS,
) -> RunPage:
    """A page of at most ``limit`` runs, newest first, after ``cursor`` (the id of the last
    run of the previous page). ``created_*`` are epoch milliseconds (``[after, before)``).

    Without an expression the page is one query. With one, pages of runs (``limit`` first,
    each next one twice as many, up to :data:`SCAN_PAGE`) are read and filtered until
    ``limit`` match, or ``scan_limit`` runs were read or
    ``scan_seconds`` spent (at least one page is read); then the cursor is the last run
    read, so a page may hold fewer than ``limit`` runs and still have a next page.
    """
    filters: dict[str, Any] = {
        "function_ids": None if function_ids is None else list(function_ids),
        "statuses": None if statuses is None else [s.value for s in statuses],
        "created_after": created_after,
        "created_before": created_before,
        "newest_first": True,
    }
    if expression is None:
        found = await store.find_runs(**filters, cursor=cursor, limit=limit + 1)
        page = found[:limit]
        return RunPage(page, page[-1].id if len(found) > limit else None)
    kept: list[Run] = []
    scanned = 0
    deadline = time.monotonic() + scan_seconds
    after = cursor
    # The first read is one page's worth, then each doubles up to SCAN_PAGE: an expression
    # most runs match fills its page from the first read, without evaluating 500 events.
    want = min(SCAN_PAGE, limit)
    while True:
        size = max(1, min(want, scan_limit - scanned))
        want = min(SCAN_PAGE, want * 2)
        chunk = await store.find_runs(**filters, cursor=after, limit=size)
        if not chunk:
            return RunPage(kept, None)
        scanned += len(chunk)
        for run in await matching(store, chunk, expression):
            kept.append(run)
            if len(kept) == limit:
                # Whether anything follows is not known without reading on: the client asks.
                return RunPage(kept, run.id)
        after = chunk[-1].id
        if len(chunk) < size:
            return RunPage(kept, None)
        if scanned >= scan_limit or time.monotonic() >= deadline:
            return RunPage(kept, after)
