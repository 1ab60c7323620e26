"""Middleware: hooks around a function's execution and around sending events.

The public classes match the reference SDK's (``Middleware``, ``MiddlewareSync``,
``TransformOutputResult``, ``StepMemos``), so middleware written for it runs here: a
middleware is registered as a *factory* ``(client, raw_request) -> Middleware``, on the
client (``Client(middleware=[...])``) or on a function (``create_function(middleware=...)``),
and a fresh instance serves each call request.

Order: the built-in :class:`LoggerMiddleware` first, then the client's, then the
function's. "Before" hooks run in that order, "after" hooks (``after_execution``,
``transform_output``, ``after_send_events``) in reverse.

Beyond the reference:
- ``transform_output`` runs for every step an answer reports, the steps of a parallel plan
  included (the reference skips it when more than one step is reported, which leaves the
  invoke payloads of a parallel group unencrypted).
- Every hook runs on the event loop, awaited when it is a coroutine, so async middleware
  serves sync functions too (the reference refuses it).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from mainspring.protocol.opcodes import Opcode

if TYPE_CHECKING:
    from mainspring.sdk.client import Client
    from mainspring.sdk.context import Context, ContextSync
    from mainspring.sdk.event import Event
    from mainspring.sdk.function import Function


class _Empty:
    """No output (a step that reports none, such as a sleep or a planned step)."""

    def __repr__(self) -> str:
        return "<empty>"


EMPTY: Final = _Empty()


@dataclasses.dataclass
class SendEventsResult:
    """What a send gave: the events' ids, and the error if it failed."""

    ids: list[str]
    error: Exception | None = None


@dataclasses.dataclass
class TransformOutputStepInfo:
    """The step whose output is being transformed: its id (as the function named it),
    its opcode and options (an invoke's ``opts["payload"]`` may be changed in place)."""

    id: str
    op: Opcode
    opts: dict[str, Any] | None


@dataclasses.dataclass
class TransformOutputResult:
    """A function's or a step's output on its way to the server. Changes to ``output`` and
    ``error`` are kept; ``step`` is information (its ``opts`` excepted, see above)."""

    error: Exception | None
    output: object
    step: TransformOutputStepInfo | None

    def has_output(self) -> bool:
        return self.output is not EMPTY


@dataclasses.dataclass
class Output:
    """A recorded step's result as a middleware sees it: its data, or its error."""

    data: object = None
    error: dict[str, Any] | None = None


class StepMemos:
    """The recorded steps' results a call brings, for ``transform_input`` to change."""

    def __init__(self, memos: dict[str, Output]) -> None:
        self._memos = memos

    @property
    def size(self) -> int:
        return len(self._memos)

    def values(self) -> Iterator[Output]:
        return iter(self._memos.values())

    def items(self) -> Iterator[tuple[str, Output]]:
        return iter(self._memos.items())

    def pop(self, hashed_id: str) -> Output | _Empty:
        return self._memos.pop(hashed_id, EMPTY)


class Middleware:
    """Async hooks; subclass and override the ones needed."""

    def __init__(self, client: Client, raw_request: object) -> None:
        self.client = client
        #: The framework's request the call came in (None in process, or for a send).
        self.raw_request = raw_request

    async def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        """Before the function runs or resumes: may change the context's events and the
        recorded steps' data."""

    async def before_execution(self) -> None:
        """Once per call, when the function is about to run code it has not run before."""

    async def after_execution(self) -> None:
        """Once per call, after the new code ran (when ``before_execution`` was called)."""

    async def transform_output(self, result: TransformOutputResult) -> None:
        """For the function's return value and for every step the answer reports."""

    async def before_response(self) -> None:
        """After the answer is made, before it goes back to the server."""

    async def before_send_events(self, events: list[Event]) -> None:
        """Before events are sent (may change their data)."""

    async def after_send_events(self, result: SendEventsResult) -> None:
        """After events were sent (or failed to be)."""


class MiddlewareSync:
    """The same hooks as :class:`Middleware`, as plain methods."""

    def __init__(self, client: Client, raw_request: object) -> None:
        self.client = client
        self.raw_request = raw_request

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        """See :meth:`Middleware.transform_input`."""

    def before_execution(self) -> None:
        """See :meth:`Middleware.before_execution`."""

    def after_execution(self) -> None:
        """See :meth:`Middleware.after_execution`."""

    def transform_output(self, result: TransformOutputResult) -> None:
        """See :meth:`Middleware.transform_output`."""

    def before_response(self) -> None:
        """See :meth:`Middleware.before_response`."""

    def before_send_events(self, events: list[Event]) -> None:
        """See :meth:`Middleware.before_send_events`."""

    def after_send_events(self, result: SendEventsResult) -> None:
        """See :meth:`Middleware.after_send_events`."""


AnyMiddleware: TypeAlias = Middleware | MiddlewareSync
#: What ``middleware=`` lists: a class or a function making a middleware for one call.
MiddlewareFactory: TypeAlias = Callable[["Client", object], AnyMiddleware]


class LoggerMiddleware(MiddlewareSync):
    """Built in, always first: ``ctx.logger`` stays quiet while the function replays
    steps it already ran, whatever logger a middleware or the client put there."""

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        from mainspring.sdk.context import ReplayAwareLogger

        current: object = ctx.logger  # a middleware may have put any logger there
        execution = getattr(ctx.step, "_execution", None)
        if execution is not None and not isinstance(current, ReplayAwareLogger):
            if isinstance(current, logging.LoggerAdapter):
                current = current.logger
            if isinstance(current, logging.Logger):
                ctx.logger = ReplayAwareLogger(current, execution)


def check_factories(owner: str, factories: object) -> tuple[MiddlewareFactory, ...]:
    """``middleware=`` as given: a list of factories (classes or callables)."""
    from mainspring.errors import FunctionConfigInvalidError

    if factories is None:
        return ()
    if isinstance(factories, (str, bytes)) or not isinstance(factories, Sequence):
        raise FunctionConfigInvalidError(
            f"{owner}: middleware must be a list of middleware classes or factories "
            f"(client, raw_request) -> Middleware, got {type(factories).__name__}"
        )
    for position, factory in enumerate(factories):
        if isinstance(factory, (Middleware, MiddlewareSync)):
            raise FunctionConfigInvalidError(
                f"{owner}: middleware item {position} is an instance of "
                f"{type(factory).__name__}; pass the class (or a factory), which makes a "
                "fresh middleware for each call"
            )
        if not callable(factory):
            raise FunctionConfigInvalidError(
                f"{owner}: middleware item {position} is {type(factory).__name__}, not a "
                "middleware class or factory"
            )
    return tuple(factories)


class Hooks:
    """The middleware of one call (or one send), in order, and their hooks."""

    def __init__(self, middleware: list[AnyMiddleware]) -> None:
        self._middleware = middleware
        #: Middleware that override ``transform_output`` (the answer is decoded for them).
        self.transforms_output = [
            m
            for m in middleware
            if type(m).transform_output
            not in (Middleware.transform_output, MiddlewareSync.transform_output)
        ]

    @classmethod
    def build(
        cls,
        client: Client,
        raw_request: object,
        factories: Sequence[MiddlewareFactory],
        *,
        builtin: bool = True,
    ) -> Hooks:
        made: list[AnyMiddleware] = [LoggerMiddleware(client, raw_request)] if builtin else []
        for factory in factories:
            middleware = factory(client, raw_request)
            if not isinstance(middleware, (Middleware, MiddlewareSync)):
                raise TypeError(
                    f"middleware factory {factory!r} made {type(middleware).__name__}, not a "
                    "Middleware or MiddlewareSync"
                )
            made.append(middleware)
        return cls(made)

    @property
    def empty(self) -> bool:
        return all(isinstance(m, LoggerMiddleware) for m in self._middleware)

    async def _each(self, name: str, *args: Any, reverse: bool = False) -> None:
        ordered = reversed(self._middleware) if reverse else self._middleware
        for middleware in ordered:
            outcome = getattr(middleware, name)(*args)
            if inspect.isawaitable(outcome):
                await outcome

    async def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        await self._each("transform_input", ctx, function, steps)

    async def before_execution(self) -> None:
        await self._each("before_execution")

    async def after_execution(self) -> None:
        await self._each("after_execution", reverse=True)

    async def transform_output(self, result: TransformOutputResult) -> None:
        for middleware in reversed(self.transforms_output):
            outcome = middleware.transform_output(result)
            if inspect.isawaitable(outcome):
                await outcome

    async def before_response(self) -> None:
        await self._each("before_response")

    async def before_send_events(self, events: list[Event]) -> None:
        await self._each("before_send_events", events)

    async def after_send_events(self, result: SendEventsResult) -> None:
        await self._each("after_send_events", result, reverse=True)

    def before_send_events_sync(self, events: list[Event]) -> None:
        for middleware in self._middleware:
            _call_sync(middleware, "before_send_events", events)

    def after_send_events_sync(self, result: SendEventsResult) -> None:
        for middleware in reversed(self._middleware):
            _call_sync(middleware, "after_send_events", result)


def _call_sync(middleware: AnyMiddleware, name: str, *args: Any) -> None:
    outcome = getattr(middleware, name)(*args)
    if inspect.isawaitable(outcome):
        close = getattr(outcome, "close", None)
        if close is not None:
            close()
        raise TypeError(
            f"{type(middleware).__name__}.{name} is async, and client.send_sync cannot await "
            "it: use client.send (async), or make the middleware a MiddlewareSync"
        )
