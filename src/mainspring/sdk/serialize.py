"""Turning user values and exceptions into wire payloads."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import orjson

from mainspring.protocol.messages import ErrorPayload

# Non-string dict keys become strings, as the stdlib encoder would do.
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


class UnserializableError(TypeError):
    """A value that is not JSON; the message says what."""


class _ModelNotJSON(TypeError):
    """A pydantic model met without an ``output_type``: the message says how to return it."""


def _not_json(value: object) -> object:
    # orjson asks this about each value it cannot encode. A pydantic model is the common
    # case, and one with a known fix; anything else keeps orjson's own message.
    pydantic = sys.modules.get("pydantic")  # not loaded: the value cannot be a model
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        name = type(value).__qualname__
        raise _ModelNotJSON(
            f"{name} is a pydantic model, which is not JSON: pass output_type={name} to "
            "step.run or create_function (the client's serializer, PydanticSerializer "
            "unless another is given, converts it), or return model.model_dump(mode='json')"
        )
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_not_json, option=_DUMP_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        hint = exc.__cause__
        raise UnserializableError(str(hint if isinstance(hint, _ModelNotJSON) else exc)) from exc


def load_json(data: bytes | str) -> Any:
    return orjson.loads(data)


def error_payload(exc: BaseException, *, code: str | None = None) -> ErrorPayload:
    """``{name, message, stack}`` for an exception, stack without mainspring's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    user_frames = [f for f in frames if "/mainspring/" not in f.filename.replace("\\", "/")]
    stack = "".join(traceback.format_list(user_frames or frames))
    stack += "".join(traceback.format_exception_only(type(exc), exc))
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    if not message and isinstance(exc, asyncio.CancelledError):
        # Only ever reported when no one cancelled the run: say so, it is not a cancellation.
        message = "the code raised asyncio.CancelledError (an operation inside it was cancelled?)"
    return ErrorPayload(name=type(exc).__name__, message=message, stack=stack, code=code)
