"""Function definitions: what ``client.create_function`` builds and registers."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol import consts
from mainspring.protocol.durations import parse_duration_ms
from mainspring.sdk.config import Cancel, Timeouts
from mainspring.sdk.flow import FlowConfig
from mainspring.sdk.serializer import Serializer, bind_output_type
from mainspring.sdk.triggers import Trigger, TriggerCron, TriggerEvent

if TYPE_CHECKING:
    from mainspring.sdk.context import Context, ContextSync
    from mainspring.sdk.middleware import MiddlewareFactory

T = TypeVar("T")

AsyncHandler = Callable[["Context"], Awaitable[T]]
SyncHandler = Callable[["ContextSync"], T]
Handler = AsyncHandler[T] | SyncHandler[T]


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The registered shape of a function (protocol §1.3), minus its URL."""

    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int | None
    cancel: tuple[Cancel, ...] = ()
    timeouts: Timeouts | None = None
    flow: FlowConfig = dataclasses.field(default_factory=FlowConfig)

    def timeout_ms(self, which: str) -> int | None:
        """``timeouts.start`` / ``timeouts.finish`` in milliseconds, if set."""
        if self.timeouts is None:
            return None
        value = self.timeouts.to_wire().get(which)
        return None if value is None else int(parse_duration_ms(value))

    @property
    def max_attempts(self) -> int:
        retries = consts.DEFAULT_RETRIES if self.retries is None else self.retries
        return retries + 1

    def to_wire(self, url: str) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": "step",
            "name": "step",
            "runtime": {"type": "http", "url": f"{url}?fnId={self.id}&stepId=step"},
        }
        if self.retries is not None:
            step["retries"] = {"attempts": self.retries}
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "triggers": [t.to_wire() for t in self.triggers],
            "steps": {"step": step},
        }
        if self.cancel:
            out["cancel"] = [c.to_wire() for c in self.cancel]
        if self.timeouts is not None:
            out["timeouts"] = self.timeouts.to_wire()
        out.update(self.flow.to_wire())
        return out


class Function(Generic[T]):
    """A durable function: a handler plus its configuration.

    Created by :meth:`mainspring.Client.create_function`; call ``function.id`` for its
    fully qualified id ``"{app_id}-{fn_id}"``.
    """

    def __init__(
        self,
        *,
        app_id: str,
        local_id: str,
        name: str,
        triggers: Sequence[Trigger],
        retries: int | None,
        handler: Handler[T],
        on_failure: Handler[Any] | None = None,
        cancel: Sequence[Cancel] = (),
        timeouts: Timeouts | None = None,
        flow: FlowConfig | None = None,
        middleware: Sequence[MiddlewareFactory] = (),
        output_type: object = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.app_id = app_id
        self.local_id = local_id
        #: Declares the return for the serializer (sdk/serializer.py); invoke reads it too.
        self.output_type = output_type
        #: What the execution calls: the handler, its return serialised per output_type.
        self.handler: Handler[Any] = _serialising(
            handler, output_type, serializer, f"function '{app_id}-{local_id}'"
        )
        #: This function's middleware factories, after the client's (sdk/middleware.py).
        self.middleware: tuple[MiddlewareFactory, ...] = tuple(middleware)
        self.is_handler_async = inspect.iscoroutinefunction(handler)
        self.config = FunctionConfig(
            id=f"{app_id}-{local_id}",
            name=name,
            triggers=tuple(triggers),
            retries=retries,
            cancel=tuple(cancel),
            timeouts=timeouts,
            flow=flow or FlowConfig(),
        )
        self.on_failure: Function[Any] | None = None
        if on_failure is not None:
            if inspect.iscoroutinefunction(on_failure) != self.is_handler_async:
                raise FunctionConfigInvalidError(
                    f"function {local_id!r}: on_failure must be async exactly when the "
                    "handler is async"
                )
            self.on_failure = Function(
                app_id=app_id,
                local_id=f"{local_id}-failure",
                name=f"{name} (failure)",
                triggers=[
                    TriggerEvent(
                        event=consts.FUNCTION_FAILED_EVENT,
                        expression=f"event.data.function_id == '{self.config.id}'",
                    )
                ],
                retries=0,
                handler=on_failure,
                middleware=self.middleware,
            )

    @property
    def id(self) -> str:
        """The fully qualified id, ``"{app_id}-{fn_id}"``."""
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def on_failure_fn_id(self) -> str | None:
        return None if self.on_failure is None else self.on_failure.id

    def get_id(self) -> str:
        return self.config.id

    def with_failure_handler(self) -> list[Function[Any]]:
        """This function and, if it has one, its on-failure function."""
        return [self] if self.on_failure is None else [self, self.on_failure]

    def __repr__(self) -> str:
        return f"<Function {self.id}>"


def _serialising(
    handler: Handler[Any], output_type: object, serializer: Serializer | None, what: str
) -> Handler[Any]:
    # Serialised inside the handler's call, so the execution (and middleware after it)
    # sees the JSON that is recorded, as for any other return value.
    typed = bind_output_type(output_type, serializer, what)
    if typed is None:
        return handler
    if inspect.iscoroutinefunction(handler):
        return typed.wrap_async(handler)
    return typed.wrap_sync(handler)


def normalise_triggers(fn_id: str, trigger: Trigger | Sequence[Trigger]) -> list[Trigger]:
    triggers = [trigger] if isinstance(trigger, TriggerEvent | TriggerCron) else list(trigger)
    if not triggers:
        raise FunctionConfigInvalidError(f"function {fn_id!r}: at least one trigger is required")
    if len(triggers) > 10:
        raise FunctionConfigInvalidError(
            f"function {fn_id!r}: at most 10 triggers, got {len(triggers)}"
        )
    for position, item in enumerate(triggers):
        if not isinstance(item, TriggerEvent | TriggerCron):
            raise FunctionConfigInvalidError(
                f"function {fn_id!r}: trigger {position} is {type(item).__name__}, "
                "expected TriggerEvent or TriggerCron"
            )
    if len(set(triggers)) != len(triggers):
        raise FunctionConfigInvalidError(f"function {fn_id!r}: duplicate triggers")
    return triggers


def check_cancel(fn_id: str, cancel: Sequence[Cancel] | None) -> tuple[Cancel, ...]:
    items = tuple(cancel or ())
    if len(items) > 5:
        raise FunctionConfigInvalidError(f"function {fn_id!r}: at most 5 cancel conditions")
    for position, item in enumerate(items):
        if not isinstance(item, Cancel):
            raise FunctionConfigInvalidError(
                f"function {fn_id!r}: cancel item {position} is {type(item).__name__}, "
                "expected Cancel"
            )
    return items


def check_retries(fn_id: str, retries: int | None) -> int | None:
    if retries is None:
        return None
    if (
        isinstance(retries, bool)
        or not isinstance(retries, int)
        or not 0 <= retries <= consts.MAX_RETRIES
    ):
        raise FunctionConfigInvalidError(
            f"function {fn_id!r}: retries must be an int from 0 to {consts.MAX_RETRIES}, "
            f"got {retries!r}"
        )
    return retries


def check_handler(fn_id: str, handler: object) -> None:
    if not callable(handler):
        raise FunctionConfigInvalidError(f"function {fn_id!r}: the handler is not callable")
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) != 1 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise FunctionConfigInvalidError(
            f"function {fn_id!r}: the handler must take exactly one argument (ctx), "
            f"it takes {len(positional)}"
        )
