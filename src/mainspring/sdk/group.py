"""Parallel groups: ``ctx.group.parallel((lambda: ctx.step.run(...), ...))``.

The result is a tuple with one entry per callable, in the order given. Overloads for up to
12 callables let type checkers infer each element's type; longer tuples fall back to a
homogeneous ``tuple[T, ...]``.

Async groups run each callable as its own task, so every branch reaches its first new step
before the group is reported, and branches of several sequential steps advance on their
own. Sync groups call the branches one after another: a branch that reaches a new step is
unwound and re-run (from memos) once its step has a result, as in the reference SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from mainspring.protocol.opcodes import ParallelMode
from mainspring.sdk.scopes import (
    BRANCH_ROUND,
    PARALLEL_SCOPE,
    BranchRound,
    BranchSuspend,
    ParallelScope,
)

if TYPE_CHECKING:
    from mainspring.sdk.execution import Execution

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")
T7 = TypeVar("T7")
T8 = TypeVar("T8")
T9 = TypeVar("T9")
T10 = TypeVar("T10")
T11 = TypeVar("T11")
T12 = TypeVar("T12")


def _check_callables(callables: object) -> Sequence[Callable[[], Any]]:
    if not isinstance(callables, tuple | list):
        raise TypeError(
            "group.parallel takes a tuple of zero-argument callables, "
            f"got {type(callables).__name__}"
        )
    for position, item in enumerate(callables):
        if not callable(item):
            hint = ""
            if inspect.iscoroutine(item):
                item.close()  # it will never run; silence "never awaited"
                hint = " (a coroutine: wrap the step call in a lambda or functools.partial)"
            raise TypeError(
                f"group.parallel: item {position} is {type(item).__name__}, not a callable{hint}"
            )
    return callables


class Group:
    """``ctx.group`` of an async function."""

    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    @overload
    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[T1]],],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[T1]], Callable[[], Awaitable[T2]]],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]], Callable[[], Awaitable[T2]], Callable[[], Awaitable[T3]]
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
            Callable[[], Awaitable[T8]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
            Callable[[], Awaitable[T8]],
            Callable[[], Awaitable[T9]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
            Callable[[], Awaitable[T8]],
            Callable[[], Awaitable[T9]],
            Callable[[], Awaitable[T10]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
            Callable[[], Awaitable[T8]],
            Callable[[], Awaitable[T9]],
            Callable[[], Awaitable[T10]],
            Callable[[], Awaitable[T11]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[
            Callable[[], Awaitable[T1]],
            Callable[[], Awaitable[T2]],
            Callable[[], Awaitable[T3]],
            Callable[[], Awaitable[T4]],
            Callable[[], Awaitable[T5]],
            Callable[[], Awaitable[T6]],
            Callable[[], Awaitable[T7]],
            Callable[[], Awaitable[T8]],
            Callable[[], Awaitable[T9]],
            Callable[[], Awaitable[T10]],
            Callable[[], Awaitable[T11]],
            Callable[[], Awaitable[T12]],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12]: ...
    @overload
    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[T]], ...],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T, ...]: ...
    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[Any]], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[Any, ...]:
        """Run the callables' steps in parallel; returns their results as a tuple.

        ``ParallelMode.RACE`` asks the executor to advance each branch as soon as its
        step finishes instead of waiting for the whole group.
        """
        items = _check_callables(callables)
        parent = PARALLEL_SCOPE.get()
        scope = ParallelScope(
            parallel_mode is ParallelMode.RACE or (parent is not None and parent.race)
        )
        token = PARALLEL_SCOPE.set(scope)
        awaitables: list[Awaitable[Any]] = []
        try:
            for position, item in enumerate(items):
                result = item()
                if not inspect.isawaitable(result):
                    for pending in awaitables:
                        close = getattr(pending, "close", None)
                        if close is not None:
                            close()
                    raise TypeError(
                        f"group.parallel: item {position} returned {type(result).__name__}, "
                        "not an awaitable; in an async function each callable must return "
                        "an awaitable such as ctx.step.run(...)"
                    )
                awaitables.append(result)
            tasks = [asyncio.ensure_future(a) for a in awaitables]
        finally:
            PARALLEL_SCOPE.reset(token)
        try:
            return tuple(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise


class GroupSync:
    """``ctx.group`` of a sync function."""

    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    @overload
    def parallel(
        self,
        callables: tuple[Callable[[], T1],],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1]: ...
    @overload
    def parallel(
        self,
        callables: tuple[Callable[[], T1], Callable[[], T2]],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2]: ...
    @overload
    def parallel(
        self,
        callables: tuple[Callable[[], T1], Callable[[], T2], Callable[[], T3]],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3]: ...
    @overload
    def parallel(
        self,
        callables: tuple[Callable[[], T1], Callable[[], T2], Callable[[], T3], Callable[[], T4]],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1], Callable[[], T2], Callable[[], T3], Callable[[], T4], Callable[[], T5]
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
            Callable[[], T8],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
            Callable[[], T8],
            Callable[[], T9],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
            Callable[[], T8],
            Callable[[], T9],
            Callable[[], T10],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
            Callable[[], T8],
            Callable[[], T9],
            Callable[[], T10],
            Callable[[], T11],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11]: ...
    @overload
    def parallel(
        self,
        callables: tuple[
            Callable[[], T1],
            Callable[[], T2],
            Callable[[], T3],
            Callable[[], T4],
            Callable[[], T5],
            Callable[[], T6],
            Callable[[], T7],
            Callable[[], T8],
            Callable[[], T9],
            Callable[[], T10],
            Callable[[], T11],
            Callable[[], T12],
        ],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12]: ...
    @overload
    def parallel(
        self,
        callables: tuple[Callable[[], T], ...],
        parallel_mode: ParallelMode = ...,
    ) -> tuple[T, ...]: ...
    def parallel(
        self,
        callables: tuple[Callable[[], Any], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[Any, ...]:
        """See :meth:`Group.parallel`."""
        items = _check_callables(callables)
        outer = BRANCH_ROUND.get()
        race = parallel_mode is ParallelMode.RACE or (outer is not None and outer.race)
        while True:
            branch = BranchRound(race)
            results: list[Any] = []
            token = BRANCH_ROUND.set(branch)
            try:
                for item in items:
                    with contextlib.suppress(BranchSuspend):
                        results.append(item())
            finally:
                BRANCH_ROUND.reset(token)
            if not branch.registrations:
                if outer is not None:
                    outer.counted.extend(branch.counted)
                return tuple(results)
            # A registration keeps the context of the branch that made it, and so this
            # round: once the round is handed on, its list goes, and with it the cycle.
            if outer is not None:
                # Nested group: the enclosing group waits for these steps too.
                outer.counted.extend(branch.counted)
                outer.registrations.extend(branch.registrations)
                branch.registrations.clear()
                raise BranchSuspend()
            self._execution.forget_counts(branch.counted)
            try:
                self._execution.block_until_any(branch.registrations)
            finally:
                branch.registrations.clear()
