"""Reading the JSON of a register body (protocol §1.3), every problem naming its path.

The readers here check one JSON value each against the shape it must have and raise
:class:`Invalid` with the path of the value (``steps.step.runtime.url``) and what is wrong
(``expected a string, got 5``). :mod:`mainspring.engine.remote` reads the body and its
functions with them, :mod:`mainspring.engine.registration_flow` the flow-control fields.

Keys are matched the way the reference server's JSON decoder (Go's ``encoding/json``)
matches struct fields: ignoring ASCII case, with the two non-ASCII letters that Unicode folds
onto ASCII ones (U+212A KELVIN SIGN is ``k``, U+017F LONG S is ``s``). When several keys
of one object match a field, the last one wins, as Go decodes them in document order. A
``null`` is the same as an absent key. Unknown keys are ignored.

Bounds: integers are 64-bit (Go's ``int``); ids, names, event names and cron strings have at
most 255 characters, URLs 2,048 and CEL expressions 4,096 (the CEL bindings overflow their
stack on expressions nested some ten thousand deep: the cap keeps well clear of that);
durations are time strings of at most 106,751 days (what Go's ``time.Duration`` holds);
nothing in a body nests deeper than 100 levels (it is stored as JSON, and the encoder stops
at 255).
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol.durations import DurationError, DurationTooLongError, parse_duration_ms
from mainspring.protocol.expressions import ExpressionError, compile_expression
from mainspring.sdk.option_base import span

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Longest id, name, label, event name or cron string.
MAX_NAME_CHARS = 255
MAX_URL_CHARS = 2048
MAX_EXPRESSION_CHARS = 4096
_DAY_MS = 86_400_000
#: Longest duration: the whole days that fit in Go's ``time.Duration`` (2**63 - 1 ns).
MAX_DURATION_MS = 106_751 * _DAY_MS
#: Deepest nesting of a body (its known shapes need eight levels).
MAX_DEPTH = 100
#: Longest problem kept in a message (a CEL error quotes the whole expression).
_MAX_PROBLEM_CHARS = 1000
#: How much of a received value a message shows.
_SHOWN_CHARS = 60

# Go's case folding of ASCII names: A-Z, and the two other letters whose fold is ASCII.
_FOLD = {ord(c): ord(c.lower()) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} | {
    0x212A: ord("k"),
    0x17F: ord("s"),
}


class Invalid(FunctionConfigInvalidError):
    """The value at ``path`` (relative to the function, or to the body for top-level
    fields; empty for the function itself) is not what the protocol allows."""

    def __init__(self, path: str, problem: str) -> None:
        if len(problem) > _MAX_PROBLEM_CHARS:
            problem = problem[: _MAX_PROBLEM_CHARS - 3] + "..."
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


def join(path: str, key: str) -> str:
    """The path of ``key`` in the object at ``path``."""
    return f"{path}.{key}" if path else key


def at(path: str, index: int) -> str:
    """The path of item ``index`` of the array at ``path``."""
    return f"{path}[{index}]"


# -- showing a received value ------------------------------------------------------------


def _text(value: str, room: int) -> str:
    # JSON spelling; lone surrogates (possible only when called with Python values, not
    # through JSON) are escaped so the message can itself be encoded as JSON.
    quoted = json.dumps(value[: max(room, 0) + 1], ensure_ascii=False)
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def _scalar(value: object, room: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of an int of thousands of digits is refused (and slow): say its size.
        return (
            str(value)
            if value.bit_length() <= 256
            else f"<an integer of {value.bit_length()} bits>"
        )
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, str):
        return _text(value, room)
    return repr(value)[: max(room, 0) + 1]


def show(value: object) -> str:
    """A received JSON value as JSON spells it, cut to about 60 characters; safe on values
    of any size or depth (nesting costs at least a character per level)."""
    parts: list[str] = []
    room = _SHOWN_CHARS + 1

    def put(text: str) -> None:
        nonlocal room
        parts.append(text[:room])
        room -= len(text)

    def walk(item: object) -> None:
        if isinstance(item, Mapping):
            put("{")
            for position, (key, sub) in enumerate(item.items()):
                if room <= 0:
                    return
                put((", " if position else "") + _scalar(key, room) + ": ")
                walk(sub)
            put("}")
        elif isinstance(item, list | tuple):
            put("[")
            for position, sub in enumerate(item):
                if room <= 0:
                    return
                if position:
                    put(", ")
                walk(sub)
            put("]")
        else:
            put(_scalar(item, room))

    walk(value)
    text = "".join(parts)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


# -- the whole body ----------------------------------------------------------------------


def check_depth(body: object) -> None:
    """``body`` (unknown keys included) has at most :data:`MAX_DEPTH` levels of objects
    and arrays, itself the first: it is stored as JSON, whose encoder stops at 255."""
    # Each node carries its trail (parent's trail, its key or index), made into a path only
    # for the one named: building every node's path would cost its length per node.
    Trail = tuple[Any, str | int] | None
    todo: list[tuple[Trail, object, int]] = [(None, body, 1)]
    while todo:
        trail, value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise Invalid(_path_of(trail), f"nests deeper than {MAX_DEPTH} levels")
        # Only objects and arrays go on: scalars cannot nest.
        if isinstance(value, Mapping):
            todo.extend(
                ((trail, _key(key)), item, depth + 1)
                for key, item in value.items()
                if isinstance(item, Mapping | list)
            )
        elif isinstance(value, list):
            todo.extend(
                ((trail, index), item, depth + 1)
                for index, item in enumerate(value)
                if isinstance(item, Mapping | list)
            )


def _key(key: object) -> str:
    # JSON keys are strings; a Python caller's other keys are named by their type.
    return key if isinstance(key, str) else f"<{type(key).__name__}>"


def _path_of(trail: tuple[Any, str | int] | None) -> str:
    parts: list[str | int] = []
    while trail is not None:
        trail, part = trail
        parts.append(part)
    path = ""
    for part in reversed(parts):
        path = at(path, part) if isinstance(part, int) else join(path, part)
    return path


# -- objects -----------------------------------------------------------------------------


def fold(name: str) -> str:
    """A key as Go's decoder compares it with a field name."""
    return name.translate(_FOLD)


class Node:
    """A JSON object of the body, at ``path``, whose fields are looked up as Go does."""

    __slots__ = ("_fields", "path", "raw")

    def __init__(self, path: str, raw: Mapping[Any, Any]) -> None:
        self.path = path
        self.raw = raw
        self._fields: dict[str, tuple[str, Any]] = {}
        for key, value in raw.items():
            if isinstance(key, str) and value is not None:
                self._fields[fold(key)] = (key, value)

    def get(self, name: str) -> tuple[str, Any]:
        """The path of field ``name`` (spelt as received) and its value, ``None`` when
        absent or null."""
        key, value = self._fields.get(fold(name), (name, None))
        return join(self.path, key), value

    def has(self, name: str) -> bool:
        return fold(name) in self._fields


def obj(path: str, value: Any, what: str = "an object") -> Node:
    if not isinstance(value, Mapping):
        raise Invalid(path, f"expected {what}, got {show(value)}")
    return Node(path, value)


def array(path: str, value: Any, *, what: str = "an array", most: int | None = None) -> list[Any]:
    """A JSON array of at most ``most`` items."""
    if not isinstance(value, list):
        raise Invalid(path, f"expected {what}, got {show(value)}")
    if most is not None and len(value) > most:
        raise Invalid(path, f"has {len(value):,} items, at most {most} are allowed")
    return value


# -- scalars -----------------------------------------------------------------------------


def string(
    path: str,
    value: Any,
    *,
    most: int = MAX_NAME_CHARS,
    empty: bool = True,
    what: str = "a string",
) -> str:
    """A JSON string of at most ``most`` characters (not empty unless ``empty``)."""
    if not isinstance(value, str):
        raise Invalid(path, f"expected {what}, got {show(value)}")
    if len(value) > most:
        raise Invalid(path, f"is {len(value):,} characters long, at most {most:,} are allowed")
    if not empty and not value:
        raise Invalid(path, "must not be empty")
    return value


def choice(path: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``, exactly."""
    text = string(path, value)
    if text not in choices:
        allowed = ", ".join(json.dumps(option) for option in choices)
        raise Invalid(path, f"expected one of {allowed}, got {show(text)}")
    return text


def integer(path: str, value: Any, *, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """A JSON integer (not a boolean, not a number with a fraction or exponent) from
    ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(path, f"expected an integer, got {show(value)}")
    if value < low:
        raise Invalid(path, f"must be at least {low}, got {show(value)}")
    if value > high:
        raise Invalid(path, f"must be at most {high:,}, got {show(value)}")
    return value


def duration_ms(path: str, value: Any, *, low: int = 0, high: int = MAX_DURATION_MS) -> float:
    """A time string (``"30s"``, ``"2h45m"``) from ``low`` to ``high`` milliseconds."""
    text = string(path, value, what="a time string such as '1m'")
    try:
        ms = parse_duration_ms(text)
    except DurationTooLongError:
        ms = math.inf
    except DurationError as exc:
        raise Invalid(path, str(exc)) from None
    if not (math.isfinite(ms) and low <= ms <= high):
        # Quoted as the options quote their durations: '8d'.
        bounds = f"must be from {span(low)} to {span(high)}"
        raise Invalid(path, f"{text!r} is out of range: {bounds}")
    return ms


def expression(path: str, value: Any, *, what: str = "a string") -> str:
    """A CEL expression that compiles (protocol §6.5)."""
    text = string(path, value, most=MAX_EXPRESSION_CHARS, what=what)
    if not text.strip():
        raise Invalid(path, "must be a non-empty CEL expression")
    try:
        compile_expression(text)
    except ExpressionError as exc:
        raise Invalid(path, str(exc)) from None
    return text


def url(path: str, value: Any, schemes: tuple[str, ...]) -> str:
    """An absolute URL with one of ``schemes`` and a host."""
    text = string(path, value, most=MAX_URL_CHARS, empty=False)
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise Invalid(path, f"{show(text)} is not a URL: it has spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise Invalid(path, f"{show(text)} is not a URL: {exc}") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        named = [f"{scheme}://" for scheme in schemes]
        wanted = ", ".join(named[:-1]) + f" or {named[-1]}" if len(named) > 1 else named[0]
        raise Invalid(path, f"{show(text)} is not an absolute {wanted} URL")
    return text
