"""Flow-control keys: a CEL expression on the triggering event, evaluated to a string.

Each distinct value is its own virtual queue (a concurrency limit, a throttle, a batch...).
Strings are used as they are and other values as JSON text (``42``, ``true``), so a key on
``event.data.user_id`` groups by user. An expression that fails to evaluate (a missing
field, a type error) gives the empty key, as the reference does: those events share one
queue rather than being dropped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import orjson

from mainspring.protocol.expressions import ExpressionError, compile_expression

_PATH = re.compile(r"event(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_MISSING = object()


@functools.lru_cache(maxsize=1024)
def _field_path(expression: str) -> tuple[str, ...] | None:
    """``("data", "user")`` for a plain ``event.data.user``, the common key: read without
    the CEL machinery (a context per evaluation costs ~20 µs, on every run)."""
    stripped = expression.strip()
    return tuple(stripped.split(".")[1:]) if _PATH.fullmatch(stripped) else None


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for name in path:
        # Events are parsed JSON: plain dicts (a cheaper check than Mapping's ABC).
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(name, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def key_value(expression: str | None, event: Mapping[str, Any]) -> str:
    """The value of a key expression for ``event`` (``""`` without an expression)."""
    if expression is None:
        return ""
    path = _field_path(expression)
    if path is not None:
        value = _lookup(event, path)
        if value is _MISSING:
            return ""  # as CEL's "no such key" error
    else:
        try:
            value = compile_expression(expression).evaluate({"event": event})
        except ExpressionError:
            return ""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return str(value)


def scoped(control: str, function_id: str, expression: str | None, event: Mapping[str, Any]) -> str:
    """``"{control}:{function id}"``, then ``":{value}"`` when the control has a key."""
    base = f"{control}:{function_id}"
    return base if expression is None else f"{base}:{key_value(expression, event)}"
