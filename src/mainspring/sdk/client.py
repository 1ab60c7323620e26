"""The client: names the app, defines functions and sends events."""

from __future__ import annotations

import asyncio
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
from mainspring.sdk.sending import HttpEventSender
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
    ) -> None:
        if not isinstance(app_id, str) or not app_id:
            raise FunctionConfigInvalidError("Client: app_id must be a non-empty string")
        self.app_id = app_id
        self.app_version = app_version
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
    ) -> Callable[[Handler[T]], Function[T]]:
        """Decorate a handler into a :class:`Function`.

        ``retries`` is the number of retries per step and per function-level attempt
        (default 4, i.e. 5 attempts; at most 20). ``on_failure`` is called once with a
        ``inngest/function.failed`` event when a run fails for good. ``cancel`` lists
        events that cancel a running run (:class:`~mainspring.Cancel`); ``timeouts``
        cancels runs that do not start or finish in time (:class:`~mainspring.Timeouts`).
        """
        if not isinstance(fn_id, str) or not fn_id:
            raise FunctionConfigInvalidError("create_function: fn_id must be a non-empty string")
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
    async def send(self, events: Event) -> list[str]: ...
    @overload
    async def send(self, events: Sequence[Event]) -> list[str]: ...
    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send one event or a list; returns the ids the engine or server assigned, in order.

        With an embedded engine running, events go to it; otherwise to the event API of
        the client's settings (retried on network errors and 5xx).
        """
        batch = [events] if isinstance(events, Event) else list(events)
        sender = self._sender
        if sender is None:
            return await HttpEventSender(self.settings).send(batch)
        loop = asyncio.get_running_loop()
        if self._sender_loop is not None and loop is not self._sender_loop:
            future = asyncio.run_coroutine_threadsafe(sender.send(batch), self._sender_loop)
            return await asyncio.wrap_future(future)
        return await sender.send(batch)

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Blocking ``send``, for sync code (not on the embedded engine's event loop)."""
        batch = [events] if isinstance(events, Event) else list(events)
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
