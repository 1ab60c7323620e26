"""The client: names the app, defines functions and sends events."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, overload

from mainspring.errors import FunctionConfigInvalidError, MainspringError
from mainspring.sdk.config import Cancel, Timeouts
from mainspring.sdk.event import Event
from mainspring.sdk.flow import (
    Batch,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    RunConcurrency,
    Singleton,
    Throttle,
    check_flow,
)
from mainspring.sdk.function import (
    Function,
    Handler,
    check_cancel,
    check_handler,
    check_retries,
    normalise_triggers,
)
from mainspring.sdk.middleware import (
    Hooks,
    MiddlewareFactory,
    SendEventsResult,
    check_factories,
)
from mainspring.sdk.sending import HttpEventSender
from mainspring.sdk.serializer import Serializer, check_serializer
from mainspring.sdk.settings import resolve
from mainspring.sdk.triggers import Trigger

T = TypeVar("T")


class EventSender(Protocol):
    """Where ``client.send`` delivers events: an embedded engine or an event API."""

    async def send(self, events: Sequence[Event]) -> list[str]: ...


class Client:
    """An app's entry point.

    >>> import mainspring
    >>> client = mainspring.Client(app_id="shop")
    >>> @client.create_function(fn_id="greet", trigger=mainspring.TriggerEvent(event="shop/hi"))
    ... async def greet(ctx: mainspring.Context) -> str:
    ...     return await ctx.step.run("say", lambda: "hi")
    """

    def __init__(
        self,
        *,
        app_id: str,
        app_version: str | None = None,
        logger: logging.Logger | None = None,
        is_production: bool | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        signing_key: str | None = None,
        event_key: str | None = None,
        env: str | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id:
            raise FunctionConfigInvalidError("Client: app_id must be a non-empty string")
        #: Middleware factories of every function of this client (see sdk/middleware.py).
        self.middleware: list[MiddlewareFactory] = list(check_factories("Client", middleware))
        self.app_id = app_id
        self.app_version = app_version
        #: Converts outputs declared with ``output_type=`` (None: PydanticSerializer).
        self.serializer = check_serializer(serializer)
        self.logger = logger or logging.getLogger("mainspring")
        #: Where the app talks to and with which keys, when served over HTTP.
        self.settings = resolve(
            is_production=is_production,
            api_base_url=api_base_url,
            event_api_base_url=event_api_base_url,
            signing_key=signing_key,
            event_key=event_key,
            env=env,
        )
        self._sender: EventSender | None = None
        self._sender_loop: asyncio.AbstractEventLoop | None = None

    def add_middleware(self, middleware: MiddlewareFactory) -> None:
        """Add a middleware factory after those given to the constructor."""
        self.middleware.extend(check_factories("Client.add_middleware", [middleware]))

    # Two overloads, so that with ``output_type=Model`` the decorated handler must return
    # a Model (T is fixed by output_type before the handler is seen); their parameters
    # must stay those of the implementation (tests/unit/test_serializers.py checks).
    @overload
    def create_function(
        self,
        *,
        fn_id: str,
        trigger: Trigger | Sequence[Trigger],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler[Any] | None = None,
        cancel: Sequence[Cancel] | None = None,
        timeouts: Timeouts | None = None,
        concurrency: Sequence[Concurrency | RunConcurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        output_type: None = None,
    ) -> Callable[[Handler[T]], Function[T]]: ...
    @overload
    def create_function(
        self,
        *,
        fn_id: str,
        trigger: Trigger | Sequence[Trigger],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler[Any] | None = None,
        cancel: Sequence[Cancel] | None = None,
        timeouts: Timeouts | None = None,
        concurrency: Sequence[Concurrency | RunConcurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        output_type: type[T],
    ) -> Callable[[Handler[T]], Function[T]]: ...
    def create_function(
        self,
        *,
        fn_id: str,
        trigger: Trigger | Sequence[Trigger],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler[Any] | None = None,
        cancel: Sequence[Cancel] | None = None,
        timeouts: Timeouts | None = None,
        concurrency: Sequence[Concurrency | RunConcurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        output_type: object = None,
    ) -> Callable[[Handler[T]], Function[T]]:
        """Decorate a handler into a :class:`Function`.

        ``retries`` is the number of retries per step and per function-level attempt
        (default 4, i.e. 5 attempts; at most 20). ``on_failure`` is called once with a
        ``inngest/function.failed`` event when a run fails for good. ``cancel`` lists
        events that cancel a running run (:class:`~mainspring.Cancel`); ``timeouts``
        cancels runs that do not start or finish in time (:class:`~mainspring.Timeouts`).
        ``output_type`` declares a return value that is not plain JSON (a pydantic model,
        ...): the client's serializer records it as JSON and ``step.invoke`` hands it back
        as ``output_type``.
        """
        if not isinstance(fn_id, str) or not fn_id:
            raise FunctionConfigInvalidError("create_function: fn_id must be a non-empty string")
        function_middleware = check_factories(f"function {fn_id!r}", middleware)
        triggers = normalise_triggers(fn_id, trigger)
        checked_retries = check_retries(fn_id, retries)
        checked_cancel = check_cancel(fn_id, cancel)
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise FunctionConfigInvalidError(
                f"function {fn_id!r}: timeouts must be a Timeouts, got {type(timeouts).__name__}"
            )
        if on_failure is not None:
            check_handler(f"{fn_id} (on_failure)", on_failure)
        flow = check_flow(
            fn_id,
            concurrency=concurrency,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch_events=batch_events,
            priority=priority,
            idempotency=idempotency,
            singleton=singleton,
            has_cancel=bool(checked_cancel),
        )

        def decorator(handler: Handler[T]) -> Function[T]:
            check_handler(fn_id, handler)
            return Function(
                app_id=self.app_id,
                local_id=fn_id,
                name=name or fn_id,
                triggers=triggers,
                retries=checked_retries,
                handler=handler,
                on_failure=on_failure,
                cancel=checked_cancel,
                timeouts=timeouts,
                flow=flow,
                middleware=function_middleware,
                output_type=output_type,
                serializer=self.serializer,
            )

        return decorator

    # -- sending events -------------------------------------------------------------

    def attach_sender(self, sender: EventSender | None) -> None:
        """Route ``send`` to ``sender`` (the embedded engine does this while it runs)."""
        if sender is not None and self._sender is not None and self._sender is not sender:
            raise MainspringError(
                f"client {self.app_id!r} is already attached to another engine; "
                "use one client per engine"
            )
        self._sender = sender
        self._sender_loop = asyncio.get_running_loop() if sender is not None else None

    @overload
    async def send(self, events: Event, *, skip_middleware: bool = False) -> list[str]: ...
    @overload
    async def send(
        self, events: Sequence[Event], *, skip_middleware: bool = False
    ) -> list[str]: ...
    async def send(
        self, events: Event | Sequence[Event], *, skip_middleware: bool = False
    ) -> list[str]:
        """Send one event or a list; returns the ids the engine or server assigned, in order.

        With an embedded engine running, events go to it; otherwise to the event API of
        the client's settings (retried on network errors and 5xx). The client's
        middleware sees them first (``before_send_events``; on copies: the events given
        are left as they are) unless ``skip_middleware``.
        """
        batch = _batch(events)
        if skip_middleware or not self.middleware:
            return await self._send(batch)
        hooks = Hooks.build(self, None, self.middleware)
        batch = [event.model_copy(deep=True) for event in batch]
        await hooks.before_send_events(batch)
        try:
            ids = await self._send(batch)
        except Exception as exc:
            await hooks.after_send_events(SendEventsResult(ids=[], error=exc))
            raise
        await hooks.after_send_events(SendEventsResult(ids=list(ids)))
        return ids

    async def _send(self, batch: list[Event]) -> list[str]:
        intercept = SEND_INTERCEPT.get()
        if intercept is not None:
            return intercept(batch)
        sender = self._sender
        if sender is None:
            return await HttpEventSender(self.settings).send(batch)
        loop = asyncio.get_running_loop()
        if self._sender_loop is not None and loop is not self._sender_loop:
            future = asyncio.run_coroutine_threadsafe(sender.send(batch), self._sender_loop)
            return await asyncio.wrap_future(future)
        return await sender.send(batch)

    def send_sync(
        self, events: Event | Sequence[Event], *, skip_middleware: bool = False
    ) -> list[str]:
        """Blocking ``send``, for sync code (not on the embedded engine's event loop)."""
        batch = _batch(events)
        if skip_middleware or not self.middleware:
            return self._send_sync(batch)
        hooks = Hooks.build(self, None, self.middleware)
        batch = [event.model_copy(deep=True) for event in batch]
        hooks.before_send_events_sync(batch)
        try:
            ids = self._send_sync(batch)
        except Exception as exc:
            hooks.after_send_events_sync(SendEventsResult(ids=[], error=exc))
            raise
        hooks.after_send_events_sync(SendEventsResult(ids=list(ids)))
        return ids

    def _send_sync(self, batch: list[Event]) -> list[str]:
        intercept = SEND_INTERCEPT.get()
        if intercept is not None:
            return intercept(batch)
        sender = self._sender
        if sender is None:
            return HttpEventSender(self.settings).send_sync(batch)
        if self._sender_loop is None:
            raise MainspringError("send_sync: the client's engine is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._sender_loop:
            raise MainspringError(
                "send_sync would block the engine's event loop; use `await client.send(...)`"
            )
        return asyncio.run_coroutine_threadsafe(sender.send(batch), self._sender_loop).result()


#: Where every client's sends go instead of an engine or the event API, in this context
#: (the testing kit's ``trigger`` keeps a function's sends in the process with it).
SEND_INTERCEPT: contextvars.ContextVar[Callable[[list[Event]], list[str]] | None] = (
    contextvars.ContextVar("mainspring_send_intercept", default=None)
)


def _batch(events: Event | Sequence[Event]) -> list[Event]:
    return [events] if isinstance(events, Event) else list(events)
