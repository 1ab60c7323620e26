"""Knowing when an async function is blocked only on steps.

The replay core reports every step a function has reached before it is blocked only on
steps, so that ``asyncio.gather`` and ``asyncio.TaskGroup`` over step calls plan their
steps together, like ``group.parallel``. That needs two facts the standard library does
not give directly:

* which tasks belong to a function's execution: a task factory, chained in front of any
  existing one, adopts every task created while an execution's context is current (but
  not tasks created inside a step's handler, which is ordinary user I/O);
* what each task is waiting for: CPython's ``Task._fut_waiter``. A task waiting on a
  :class:`StepFuture` is blocked on a step; a task waiting on anything else is blocked on
  steps only if it has live child tasks (``gather`` and ``TaskGroup`` parents); any other
  wait (a socket, a timer) means the function is still working.

``_fut_waiter`` exists on CPython's tasks (C and pure-Python) on every supported version.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

#: The tracker of the execution whose user code is running, if any.
CURRENT_TRACKER: contextvars.ContextVar[TaskTracker | None] = contextvars.ContextVar(
    "mainspring_task_tracker", default=None
)
#: True inside a step handler: tasks created there are not part of the function body.
IN_STEP: contextvars.ContextVar[bool] = contextvars.ContextVar("mainspring_in_step", default=False)

#: The context for done callbacks that read no context variable. Without one, asyncio
#: copies the current context for every callback it is given: a fan-out of thousands of
#: steps would allocate (and the collector walk) a copy per step and callback.
BOOKKEEPING: contextvars.Context = contextvars.Context()


class StepFuture(asyncio.Future[Any]):
    """A future that resolves with a step's memo; waiting on it means "blocked on a step"."""


_TaskFactory = Callable[..., "asyncio.Task[Any]"]


class _ChainedFactory:
    """Adopts tasks into the current tracker, delegating creation to the previous factory."""

    def __init__(self, previous: _TaskFactory | None) -> None:
        self.previous = previous

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        if self.previous is not None:
            task = self.previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        tracker = CURRENT_TRACKER.get()
        if tracker is not None and not IN_STEP.get():
            tracker.adopt(task, asyncio.current_task(loop))
        return task


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Put the adopting factory on ``loop`` once (idempotent, keeps any existing factory)."""
    current = loop.get_task_factory()
    if not isinstance(current, _ChainedFactory):
        loop.set_task_factory(_ChainedFactory(cast(Any, current)))


class TaskTracker:
    """The live tasks of one execution and whether they are all blocked on steps."""

    __slots__ = ("_children", "_live", "_on_change")

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._live: dict[asyncio.Task[Any], asyncio.Task[Any] | None] = {}
        self._children: dict[asyncio.Task[Any], int] = {}
        self._on_change = on_change

    def adopt(self, task: asyncio.Task[Any], parent: asyncio.Task[Any] | None) -> None:
        owner = parent if parent in self._live else None
        self._live[task] = owner
        if owner is not None:
            self._children[owner] = self._children.get(owner, 0) + 1
        task.add_done_callback(self._finished, context=BOOKKEEPING)
        self._on_change()

    def _finished(self, task: asyncio.Task[Any]) -> None:
        owner = self._live.pop(task, None)
        if owner is not None:
            left = self._children[owner] - 1
            if left:
                self._children[owner] = left
            else:
                del self._children[owner]
        self._on_change()

    def any_runnable(self) -> bool:
        for task in self._live:
            waiter = task._fut_waiter  # type: ignore[attr-defined]
            if waiter is None or waiter.done():
                return True
        return False

    def quiescent(self) -> bool:
        """True when every live task waits on a step, directly or through its children."""
        for task in self._live:
            waiter = task._fut_waiter  # type: ignore[attr-defined]
            if waiter is None or waiter.done():
                return False
            if isinstance(waiter, StepFuture) or waiter in self._live:
                continue
            if self._children.get(task):
                continue
            return False
        return True

    def cancel_all(self) -> None:
        for task in list(self._live):
            task.cancel()
