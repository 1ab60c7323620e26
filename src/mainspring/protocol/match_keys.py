"""Indexing ``async.<path> == <literal>`` conditions.

Most wait and cancel conditions, once the triggering event's values are substituted, read
``"a1" == async.data.id``. Such a pause can be filed under ``("data.id", '"a1"')`` and an
incoming event looked up by the value it has at ``data.id``, instead of evaluating every
waiting pause against every event. Anything else is evaluated in full.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

_PATH = r"async((?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
_LITERAL = r"(\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?|true|false|null)"
_LEFT = re.compile(rf"^\s*{_PATH}\s*==\s*{_LITERAL}\s*$")
_RIGHT = re.compile(rf"^\s*{_LITERAL}\s*==\s*{_PATH}\s*$")


def canonical(value: Any) -> str:
    """The key form of a JSON value: whole floats as ints, so 1 and 1.0 meet."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return orjson.dumps(value).decode()


def equality_key(expression: str) -> tuple[str, str] | None:
    """``(path, canonical literal)`` if ``expression`` is exactly ``async.<path> == <lit>``."""
    match = _LEFT.match(expression)
    if match is not None:
        path, literal = match.group(1), match.group(2)
    else:
        match = _RIGHT.match(expression)
        if match is None:
            return None
        literal, path = match.group(1), match.group(2)
    try:
        value = orjson.loads(literal)
    except orjson.JSONDecodeError:
        return None
    return path[1:], canonical(value)


def value_key(event: Mapping[str, Any], path: str) -> str | None:
    """The canonical value an event has at a dotted path, or None if it has none."""
    current: Any = event
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    if isinstance(current, Mapping | list):
        return None  # conditions compare scalars
    return canonical(current)
