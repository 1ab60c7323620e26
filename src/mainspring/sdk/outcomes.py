"""How a handler is called, and how what it raised becomes a failure response."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from mainspring.errors import NonRetriableError, RetryAfterError, StepError
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import ErrorPayload, Failure
from mainspring.sdk.drift import StepKindChanged
from mainspring.sdk.scopes import NestedStepInterrupt
from mainspring.sdk.serialize import error_payload


def call_handler_sync(handler: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = handler(*args)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise TypeError(
            "a sync function's step handler returned an awaitable; use an async function "
            "(mainspring.Context) for async step handlers"
        )
    return result


def final_failure(name: str, message: str, code: ErrorCode) -> Failure:
    """A failure no retry can mend."""
    return Failure(ErrorPayload(name=name, message=message, code=code), retriable=False)


def unserializable(what: str, err: Exception) -> Failure:
    return final_failure(
        "OutputUnserializableError",
        f"{what} returned unserializable data: {err}",
        ErrorCode.OUTPUT_UNSERIALIZABLE,
    )


def nested_step(inner: str, outer: str | None = None) -> Failure:
    where = "another step's handler" if outer is None else f"the handler of step {outer!r}"
    return final_failure(
        "StepUsageError",
        f"step {inner!r} was called inside {where}; nested steps are not supported",
        ErrorCode.STEP_NESTED,
    )


def function_failure(exc: BaseException) -> Failure:
    if isinstance(exc, NestedStepInterrupt):
        return nested_step(exc.user_id)
    if isinstance(exc, StepKindChanged):
        return final_failure("StepKindChangedError", exc.message, ErrorCode.STEP_KIND_CHANGED)
    if isinstance(exc, StepError):
        payload = ErrorPayload(
            name=exc.name, message=exc.message, stack=exc.stack, code=ErrorCode.STEP_ERRORED
        )
        return Failure(payload, retriable=False)
    if isinstance(exc, RetryAfterError):
        return Failure(error_payload(exc, code=exc.code), retry_after=exc.retry_after)
    if isinstance(exc, NonRetriableError):
        return Failure(error_payload(exc, code=exc.code), retriable=False)
    retriable = getattr(exc, "is_retriable", True) is not False
    if not isinstance(exc, Exception):
        retriable = False
    return Failure(error_payload(exc, code=ErrorCode.UNKNOWN), retriable=retriable)


def settle(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


async def await_any(awaitable: Any) -> Any:
    return await awaitable
