"""Where a served app runs the code of its sync steps (``INNGEST_THREAD_POOL_MAX_WORKERS``).

A sync step's handler must not run on the event loop that answers the executor, or one slow
step would hold every other request up; by default it runs on the loop's default executor.
The variable sizes a pool of the serve handler's own instead, as the reference's does.
``0`` means no pool, as in the reference: the step's code runs on the thread that answers
the request. That suits adapters that give each request a thread of its own (Flask, Django
in sync mode); on FastAPI or Tornado it blocks the event loop while the step runs, which is
what the reference does too.

A sync function's *body* keeps a thread of its own whatever the setting: it blocks on each
step until the executor has recorded it, which only a thread of its own can do.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class InlineExecutor(concurrent.futures.Executor):
    """Runs each submitted call at once, on the submitting thread."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the step's own error, handed back through the future
            future.set_exception(exc)
        return future


def step_executor(max_workers: int | None) -> concurrent.futures.Executor | None:
    """The executor for sync steps: None (the loop's default) when unset."""
    if max_workers is None:
        return None
    if max_workers == 0:
        return InlineExecutor()
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=max_workers, thread_name_prefix="mainspring-step"
    )
