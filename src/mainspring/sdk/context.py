"""What a function receives: :class:`Context` (async) or :class:`ContextSync`."""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any

from mainspring.sdk.event import Event

if TYPE_CHECKING:
    from mainspring.sdk.execution import Execution
    from mainspring.sdk.group import Group, GroupSync
    from mainspring.sdk.step import Step, StepSync


class ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    """Logs only when the function runs new code, not while it replays memoized steps."""

    def __init__(self, logger: logging.Logger, execution: Execution) -> None:
        super().__init__(logger, {})
        self._execution = execution

    def isEnabledFor(self, level: int) -> bool:
        return not self._execution.replaying and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.setdefault("extra", {})
        extra.setdefault("run_id", self._execution.run_id)
        return msg, kwargs


@dataclasses.dataclass(slots=True)
class Context:
    """The argument of an async function.

    Attributes:
        attempt: 0-based attempt of the current request (per step).
        event: the triggering event (the first one under batching).
        events: every triggering event.
        group: ``group.parallel`` for running steps in parallel.
        job_id: the executor's queue item behind this call (its retries share it); None
            when the executor does not say.
        logger: a logger that stays quiet while the function replays.
        request_id: this call's own id (each retry has another); None when not given.
        run_id: this run's id.
        step: the step API (``run``, ``sleep``, ``wait_for_event``, ...).
    """

    attempt: int
    event: Event
    events: list[Event]
    group: Group
    job_id: str | None
    logger: logging.LoggerAdapter[logging.Logger]
    request_id: str | None
    run_id: str
    step: Step


@dataclasses.dataclass(slots=True)
class ContextSync:
    """The argument of a sync function; same attributes as :class:`Context`."""

    attempt: int
    event: Event
    events: list[Event]
    group: GroupSync
    job_id: str | None
    logger: logging.LoggerAdapter[logging.Logger]
    request_id: str | None
    run_id: str
    step: StepSync


@functools.cache
def _step_api() -> tuple[type[Group], type[GroupSync], type[Step], type[StepSync]]:
    """The step API's classes, imported at the first run: importing them with this module
    would bring the expression engine into ``import mainspring``; importing them at every
    run would cost each run a few microseconds."""
    from mainspring.sdk.group import Group, GroupSync
    from mainspring.sdk.step import Step, StepSync

    return Group, GroupSync, Step, StepSync


def build_context(execution: Execution, events: list[Event]) -> Any:
    """The argument the function gets: async or sync flavour, per its handler."""
    Group, GroupSync, Step, StepSync = _step_api()
    logger = ReplayAwareLogger(execution.client.logger, execution)
    if execution.is_async:
        return Context(
            attempt=execution.attempt,
            event=events[0],
            events=events,
            group=Group(execution),
            job_id=None,  # both ids are the call's: Execution.call sets them for each
            logger=logger,
            request_id=None,
            run_id=execution.run_id,
            step=Step(execution),
        )
    return ContextSync(
        attempt=execution.attempt,
        event=events[0],
        events=events,
        group=GroupSync(execution),
        job_id=None,
        logger=logger,
        request_id=None,
        run_id=execution.run_id,
        step=StepSync(execution),
    )
