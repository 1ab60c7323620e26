"""The step API: :class:`Step` (async functions) and :class:`StepSync` (sync functions).

Both build the same :class:`~mainspring.sdk.ops.StepSpec` through the module-level
builders below; the twins only differ in how they wait.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, overload

import pydantic

from mainspring.errors import FunctionConfigInvalidError, StepUsageError
from mainspring.protocol import consts
from mainspring.protocol.durations import DurationError, format_duration, to_ms
from mainspring.protocol.expressions import ExpressionError, compile_expression
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.event import Event
from mainspring.sdk.ops import ResultKind, StepSpec
from mainspring.sdk.serializer import OutputType
from mainspring.sdk.step_ai import AI, AISync

if TYPE_CHECKING:
    from mainspring.sdk.execution import Execution
    from mainspring.sdk.function import Function

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Sleeps, waits and invokes are capped at 366 days (protocol §8.1).
MAX_WAIT = datetime.timedelta(days=366)
_DEFAULT_INVOKE_TIMEOUT = "366d"


def _check_step_id(step_id: object) -> str:
    if not isinstance(step_id, str) or not step_id:
        raise StepUsageError(f"step id must be a non-empty string, got {step_id!r}")
    return step_id


def _iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local time, as in the reference SDK
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _timeout(step_id: str, what: str, value: int | datetime.timedelta | str) -> str:
    try:
        ms = to_ms(value)
        text = format_duration(value)
    except DurationError as exc:
        raise StepUsageError(f"step {step_id!r}: invalid {what}: {exc}") from exc
    if ms > MAX_WAIT.total_seconds() * 1000:
        raise StepUsageError(f"step {step_id!r}: {what} {text} is longer than the 366-day maximum")
    return text


def run_spec(step_id: str, handler: Callable[..., Any], args: tuple[Any, ...]) -> StepSpec:
    step_id = _check_step_id(step_id)
    if not callable(handler):
        raise StepUsageError(f"step {step_id!r}: handler {handler!r} is not callable")
    return StepSpec(Opcode.STEP_RUN, step_id, step_id, ResultKind.DATA, handler=handler, args=args)


def sleep_spec(step_id: str, duration: int | datetime.timedelta | str) -> StepSpec:
    step_id = _check_step_id(step_id)
    text = _timeout(step_id, "sleep duration", duration)
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(milliseconds=to_ms(duration))
    return StepSpec(Opcode.SLEEP, step_id, _iso(until), ResultKind.NONE, opts={"duration": text})


def sleep_until_spec(step_id: str, until: datetime.datetime) -> StepSpec:
    step_id = _check_step_id(step_id)
    if not isinstance(until, datetime.datetime):
        raise StepUsageError(f"step {step_id!r}: sleep_until needs a datetime, got {until!r}")
    aware = until if until.tzinfo is not None else until.astimezone()
    if aware - datetime.datetime.now(datetime.UTC) > MAX_WAIT:
        raise StepUsageError(
            f"step {step_id!r}: sleep_until {aware.isoformat()} is more than 366 days away"
        )
    return StepSpec(Opcode.SLEEP, step_id, _iso(aware), ResultKind.NONE)


def wait_spec(
    step_id: str, event: str, if_exp: str | None, timeout: int | datetime.timedelta | str
) -> StepSpec:
    step_id = _check_step_id(step_id)
    if not isinstance(event, str) or not event:
        raise StepUsageError(f"step {step_id!r}: wait_for_event needs an event name")
    opts: dict[str, Any] = {"event": event, "timeout": _timeout(step_id, "timeout", timeout)}
    if if_exp is not None:
        try:
            compile_expression(if_exp)
        except ExpressionError as exc:
            raise StepUsageError(f"step {step_id!r}: invalid if_exp: {exc}") from exc
        opts["if"] = if_exp
    return StepSpec(Opcode.WAIT_FOR_EVENT, step_id, event, ResultKind.EVENT, opts=opts)


def invoke_spec(
    step_id: str,
    function_id: str,
    data: Any,
    timeout: int | datetime.timedelta | str | None,
    v: str | None,
) -> StepSpec:
    step_id = _check_step_id(step_id)
    if isinstance(data, pydantic.BaseModel):  # sent as its JSON object, as Event data is
        data = data.model_dump(mode="json")
    payload: dict[str, Any] = {"data": {} if data is None else data}
    if v is not None:
        payload["v"] = v
    opts: dict[str, Any] = {
        "function_id": function_id,
        "payload": payload,
        "timeout": _timeout(
            step_id, "invoke timeout", timeout if timeout is not None else _DEFAULT_INVOKE_TIMEOUT
        ),
    }
    return StepSpec(Opcode.INVOKE_FUNCTION, step_id, step_id, ResultKind.DATA, opts=opts)


class _StepBase:
    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def _send_spec(self, step_id: str, events: Event | Sequence[Event]) -> StepSpec:
        batch = [events] if isinstance(events, Event) else list(events)
        for position, item in enumerate(batch):
            if not isinstance(item, Event):
                raise StepUsageError(
                    f"step {step_id!r}: send_event item {position} is "
                    f"{type(item).__name__}, not an Event"
                )
        client = self._execution.client
        handler = client.send if self._execution.is_async else client.send_sync
        return StepSpec(
            Opcode.STEP_RUN,
            _check_step_id(step_id),
            step_id,
            ResultKind.DATA,
            opts={"type": consts.STEP_TYPE_SEND_EVENT},
            handler=handler,
            args=(batch,),
        )

    def _invoke_target(self, function: Function[Any]) -> str:
        from mainspring.sdk.function import Function

        if not isinstance(function, Function):
            raise FunctionConfigInvalidError(f"invoke: {function!r} is not a mainspring Function")
        return function.id

    def _output_type(self, spec: StepSpec, typ: object) -> OutputType | None:
        """``output_type`` for step ``spec`` (None: no conversion, as without one)."""
        if typ is None:
            return None
        return OutputType(typ, self._execution.client.serializer, f"step {spec.user_id!r}")

    def _invoked_type(
        self, spec: StepSpec, typ: object, function: Function[Any] | None = None
    ) -> OutputType | None:
        """An invoke's ``output_type``: the one given, else the invoked function's."""
        if typ is None and function is not None:
            typ = function.output_type
        return self._output_type(spec, typ)


class Step(_StepBase):
    """Steps of an async function. Every method is awaited."""

    __slots__ = ("ai",)

    def __init__(self, execution: Execution) -> None:
        super().__init__(execution)
        #: ``step.ai.infer``: model calls the server makes (sdk/step_ai.py).
        self.ai = AI(execution)

    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[[*Ts], Awaitable[T]],
        *handler_args: *Ts,
        output_type: type[T] | None = None,
    ) -> T: ...
    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[[*Ts], T],
        *handler_args: *Ts,
        output_type: type[T] | None = None,
    ) -> T: ...
    async def run(  # type: ignore[misc]  # mypy cannot match *Ts overloads to *Any
        self,
        step_id: str,
        handler: Callable[..., Any],
        *handler_args: Any,
        output_type: object = None,
    ) -> Any:
        """Run ``handler(*handler_args)`` once, durably; returns its (JSON) result.

        On a replay the recorded result comes back without calling the handler again.
        An exception is retried with backoff; once retries are exhausted (or on a
        :class:`~mainspring.NonRetriableError`) the step raises :class:`~mainspring.StepError`
        here, which the function may catch.

        ``output_type`` (a pydantic model, ``list[Model]``, ...) declares a result that is
        not plain JSON: the client's serializer records it as JSON and hands it back as
        ``output_type``, when the step has just run as on a replay (see sdk/serializer.py).
        """
        spec = run_spec(step_id, handler, handler_args)
        typed = self._output_type(spec, output_type)
        if typed is None:
            return await self._execution.step_async(spec)
        spec = dataclasses.replace(spec, handler=typed.wrap_async(handler))
        return typed.load(await self._execution.step_async(spec))

    async def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        """Pause the run durably for ``duration`` (milliseconds or a timedelta)."""
        await self._execution.step_async(sleep_spec(step_id, duration))

    async def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        """Pause the run durably until ``until`` (a naive datetime is local time)."""
        await self._execution.step_async(sleep_until_spec(step_id, until))

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
    ) -> Event | None:
        """Wait for an event named ``event`` (matching ``if_exp``), or ``None`` on timeout."""
        result: Event | None = await self._execution.step_async(
            wait_spec(step_id, event, if_exp, timeout)
        )
        return result

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: type[T] | None = None,
    ) -> T:
        """Run another function of this app and return its output (as the function's
        ``output_type``, or the ``output_type`` given here, when there is one)."""
        spec = invoke_spec(step_id, self._invoke_target(function), data, timeout, v)
        typed = self._invoked_type(spec, output_type, function)
        result: T = await self._execution.step_async(spec)
        return result if typed is None else typed.load(result)

    @overload
    async def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: None = None,
    ) -> Any: ...
    @overload
    async def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: type[T],
    ) -> T: ...
    async def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: object = None,
    ) -> Any:
        """Run a function by id (``app_id`` defaults to this client's app)."""
        target = f"{app_id or self._execution.client.app_id}-{function_id}"
        spec = invoke_spec(step_id, target, data, timeout, v)
        typed = self._invoked_type(spec, output_type)
        result = await self._execution.step_async(spec)
        return result if typed is None else typed.load(result)

    async def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events durably (exactly once per run); returns their ids."""
        result: list[str] = await self._execution.step_async(self._send_spec(step_id, events))
        return result


class StepSync(_StepBase):
    """Steps of a sync function; same methods as :class:`Step`, blocking."""

    __slots__ = ("ai",)

    def __init__(self, execution: Execution) -> None:
        super().__init__(execution)
        self.ai = AISync(execution)

    def run(
        self,
        step_id: str,
        handler: Callable[[*Ts], T],
        *handler_args: *Ts,
        output_type: type[T] | None = None,
    ) -> T:
        """See :meth:`Step.run`."""
        spec = run_spec(step_id, handler, handler_args)
        typed = self._output_type(spec, output_type)
        if typed is None:
            result: T = self._execution.step_sync(spec)
            return result
        spec = dataclasses.replace(spec, handler=typed.wrap_sync(handler))
        loaded: T = typed.load(self._execution.step_sync(spec))
        return loaded

    def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        self._execution.step_sync(sleep_spec(step_id, duration))

    def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        self._execution.step_sync(sleep_until_spec(step_id, until))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
    ) -> Event | None:
        result: Event | None = self._execution.step_sync(wait_spec(step_id, event, if_exp, timeout))
        return result

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: type[T] | None = None,
    ) -> T:
        spec = invoke_spec(step_id, self._invoke_target(function), data, timeout, v)
        typed = self._invoked_type(spec, output_type, function)
        result: T = self._execution.step_sync(spec)
        return result if typed is None else typed.load(result)

    @overload
    def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: None = None,
    ) -> Any: ...
    @overload
    def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: type[T],
    ) -> T: ...
    def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Any = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
        output_type: object = None,
    ) -> Any:
        target = f"{app_id or self._execution.client.app_id}-{function_id}"
        spec = invoke_spec(step_id, target, data, timeout, v)
        typed = self._invoked_type(spec, output_type)
        result = self._execution.step_sync(spec)
        return result if typed is None else typed.load(result)

    def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        result: list[str] = self._execution.step_sync(self._send_spec(step_id, events))
        return result
