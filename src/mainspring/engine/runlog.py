"""What the engine says about runs, on the ``mainspring.runs`` logger.

One line when a run starts (INFO), one when it finishes (INFO, WARNING if it failed) with
its status and how long it took (a run whose first call finished it gets the finish line
alone, naming its event as the start line would), and one for each failed attempt
(WARNING) with the error
and, when :attr:`RunLog.tracebacks` is on (the embedded engine and ``mainspring dev``), the
stack the SDK sent; ``mainspring start`` logs the message only.

A line is written only once the unit that records what it tells has committed
(:attr:`~mainspring.engine.unit.Unit.notes`, run by the executor after the store answered),
so a unit that rolls back says nothing. Nothing is built when the logger would drop the
line (``isEnabledFor`` is checked first): a run costs two checks when logging is off.

:func:`last_error` answers the REST field ``last_error``: the failed attempt a run that is
being retried is waiting out, and when it runs again.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any, Protocol

from mainspring.engine.records import RunStatus
from mainspring.protocol.messages import ErrorPayload

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mainspring.engine.records import Job, StepAttempt
    from mainspring.engine.unit import Unit


class RunReads(Protocol):
    """The reads :func:`last_error` needs (the engine's read side has them)."""

    async def jobs(self, run_id: str) -> Sequence[Job]: ...
    async def history(self, run_id: str) -> Sequence[StepAttempt]: ...


logger = logging.getLogger("mainspring.runs")

#: History entries of failed attempts that are retried (see ``engine/executor.py``).
_RETRIED_OPS = frozenset({"StepError", "FunctionError"})


class RunLog:
    """Writes the run lines of one engine.

    Args:
        tracebacks: add the stack the SDK sent to the lines of failures (dev); off, a line
            carries the error's name and message only (``mainspring start``).
    """

    def __init__(self, *, tracebacks: bool = True) -> None:
        self.tracebacks = tracebacks

    def started(self, unit: Unit) -> None:
        """The run's first call answered (its first attempt)."""
        if not logger.isEnabledFor(logging.INFO):
            return
        run = unit.run
        name = run.events[0].get("name") if run.events else None

        def note() -> None:
            logger.info("run %s started: %s (event %r)", run.run_id, run.function_id, name)

        unit.notes.append(note)
        unit.start_note = (note, name)

    def attempt_failed(
        self,
        unit: Unit,
        error: ErrorPayload,
        *,
        step: str | None,
        retry_at: int | None,
    ) -> None:
        """An attempt failed: retried at ``retry_at`` (epoch ms), or not (None: the step
        failed for good; the function decides what follows)."""
        if not logger.isEnabledFor(logging.WARNING):
            return
        run, attempt, now = unit.run, unit.job.attempt, unit.now
        what = f"step {step!r}" if step else "the function"
        tried = f"attempt {attempt + 1} of {run.max_attempts}"
        if retry_at is None:
            follows = "no retries left" if attempt + 1 >= run.max_attempts else "not retried"
        else:
            follows = f"retrying in {_duration(retry_at - now)} (at {_clock(retry_at)})"
        text = _error_text(error, tracebacks=self.tracebacks)
        unit.notes.append(
            lambda: logger.warning(
                "run %s: %s of %s failed (%s; %s): %s",
                run.run_id,
                what,
                run.function_id,
                tried,
                follows,
                text,
            )
        )

    def finished(self, unit: Unit, status: RunStatus, error: ErrorPayload | None) -> None:
        """The run ended with ``status`` in this unit."""
        level = logging.WARNING if status is RunStatus.FAILED else logging.INFO
        if not logger.isEnabledFor(level):
            return
        run = unit.run
        since = run.started_at if run.started_at is not None else run.created_at
        took = _duration(unit.now - since)
        verb = status.value.lower()
        what = run.function_id
        if unit.start_note is not None:
            # Started and finished in one unit: one line says both.
            note, name = unit.start_note
            unit.notes.remove(note)
            unit.start_note = None
            what = f"{what} (event {name!r})"
        if error is None:
            unit.notes.append(
                lambda: logger.log(level, "run %s %s: %s in %s", run.run_id, verb, what, took)
            )
            return
        tracebacks = self.tracebacks and status is RunStatus.FAILED
        text = _error_text(error, tracebacks=tracebacks)
        unit.notes.append(
            lambda: logger.log(level, "run %s %s: %s in %s: %s", run.run_id, verb, what, took, text)
        )


def _error_text(error: ErrorPayload, *, tracebacks: bool) -> str:
    """``Name: message``, then (with ``tracebacks``) the stack, indented."""
    text = f"{error.name}: {error.message}" if error.message else error.name
    stack = error.stack.rstrip() if tracebacks and isinstance(error.stack, str) else ""
    if stack:
        text += "\n" + "\n".join("    " + line for line in stack.splitlines())
    return text


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{max(ms, 0)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _clock(ms: int) -> str:
    """Local wall-clock time of epoch ``ms``."""
    moment = datetime.datetime.fromtimestamp(ms / 1000).astimezone()
    return moment.strftime("%H:%M:%S")


async def last_error(engine: RunReads, run_id: str) -> dict[str, Any] | None:
    """The failed attempt an unfinished run is waiting to retry, or None.

    ``{"error", "step", "attempt", "failed_at", "next_attempt", "next_attempt_at"}``:
    ``step`` is the step's id as the function named it (None for an error outside steps),
    ``attempt`` the 0-based attempt that failed (as in the run's history), ``failed_at``
    and ``next_attempt_at`` epoch milliseconds. Costs one read of the run's jobs, and one
    of its history only while a retry is pending.
    """
    retries = [job for job in await engine.jobs(run_id) if job.attempt > 0]
    if not retries:
        return None
    upcoming = min(retries, key=lambda job: job.run_at)
    failures = [
        entry
        for entry in await engine.history(run_id)
        if entry.op in _RETRIED_OPS and entry.error is not None
    ]
    if not failures:
        return None
    failed = max(failures, key=lambda entry: entry.ended_at)
    return {
        "error": failed.error,
        "step": failed.user_id or None,
        "attempt": failed.attempt,
        "failed_at": failed.ended_at,
        "next_attempt": upcoming.attempt,
        "next_attempt_at": upcoming.run_at,
    }
