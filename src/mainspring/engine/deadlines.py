"""A run's deadlines (``Timeouts``, protocol §10): cancelled if it has not started within
``start`` of its creation, or not finished within ``finish`` of its start.

Each deadline is a ``timeout`` job: the start deadline is queued with the run (so it fires
even while flow control holds the run back), the finish deadline with the run's first
call. Any call job past a deadline cancels the run instead of calling too.
"""

from __future__ import annotations

from typing import Any

from mainspring.engine.records import Job, JobKind
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.store.contract import NewRun
from mainspring.protocol.messages import ErrorPayload
from mainspring.sdk.function import Function


def start_deadline(function: Function[Any], run: NewRun) -> Job | None:
    """The job that cancels a run not started within ``timeouts.start``."""
    start = function.config.timeout_ms("start")
    if start is None:
        return None
    return Job(
        id=f"{run.run_id}-start-timeout",
        run_id=run.run_id,
        kind=JobKind.TIMEOUT,
        run_at=run.created_at + start,
        data={"timeout": "start"},
    )


def finish_deadline(function: Function[Any] | None, run: ActiveRun, started: int) -> Job | None:
    """The job that cancels a run not finished within ``timeouts.finish`` of ``started``."""
    finish = None if function is None else function.config.timeout_ms("finish")
    if finish is None:
        return None
    return Job(
        id=f"{run.run_id}-finish-timeout",
        run_id=run.run_id,
        kind=JobKind.TIMEOUT,
        run_at=started + finish,
    )


def overdue(
    function: Function[Any] | None, run: ActiveRun, job: Job, now: int
) -> ErrorPayload | None:
    """Why the run must be cancelled instead of called, if it is past a deadline."""
    timeouts = None if function is None else function.config.timeouts
    if function is None or timeouts is None:
        return None
    limits = timeouts.to_wire()
    start = function.config.timeout_ms("start")
    start_job = job.kind is JobKind.TIMEOUT and (job.data or {}).get("timeout") == "start"
    if start is not None and run.started_at is None and (start_job or now - run.created_at > start):
        return ErrorPayload(
            name="FunctionTimeoutError",
            message=f"the run did not start within {limits['start']}",
        )
    finish = function.config.timeout_ms("finish")
    finish_job = job.kind is JobKind.TIMEOUT and not start_job
    if (
        finish is not None
        and run.started_at is not None
        and (finish_job or now - run.started_at > finish)
    ):
        return ErrorPayload(
            name="FunctionTimeoutError",
            message=f"the run did not finish within {limits['finish']}",
        )
    return None
