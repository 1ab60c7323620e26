"""Turning user values and exceptions into wire payloads."""

from __future__ import annotations

import traceback
from typing import Any

import orjson

from mainspring.protocol.messages import ErrorPayload

# Non-string dict keys become strings, as the stdlib encoder would do.
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


class UnserializableError(TypeError):
    """A value that is not JSON; the message says what."""


def dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_DUMP_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise UnserializableError(str(exc)) from exc


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
    return ErrorPayload(name=type(exc).__name__, message=message, stack=stack, code=code)
