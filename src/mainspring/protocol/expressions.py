"""CEL expressions in the dialect Inngest uses.

Trigger ``expression``\\s, batch ``if``/``key``, flow-control ``key``\\s and the ``if`` of
``waitForEvent``/``cancelOn`` are Google CEL evaluated over the variables ``event``,
``async`` and ``vars`` (maps of string to dyn), with all CEL macros and eight extra
functions: ``lowercase``, ``uppercase``, ``b64decode``, ``json_parse``, ``date``, ``now``,
``now_plus`` and ``now_minus``.

We use ``common-expression-language`` (import name ``cel``), Python bindings for the Rust
``cel`` crate: it implements real CEL (macros, ``has()``, timestamps, heterogeneous numeric
equality) in microseconds per evaluation, compiled programs can be shared between threads,
and Python callables can be registered as CEL functions. A pure-Python interpreter would be
an order of magnitude slower on the event-matching hot path.

Errors: syntax errors raise :class:`ExpressionError` from :func:`compile_expression`.
Evaluation errors (a missing map key, a type mismatch, a failing extra function) raise
:class:`ExpressionError` from :meth:`Expression.evaluate`; :meth:`Expression.matches`
turns them into "no match", which is how ``event.data.missing == 1`` is false for trigger
matching. CEL's ``||``/``&&`` absorb errors, so ``event.data.missing == 1 || true`` is true.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from mainspring.protocol.durations import to_ms

if TYPE_CHECKING:
    import cel


@functools.cache
def _cel() -> Any:
    """The ``cel`` bindings, imported on first use. Importing them costs ~130 ms (the
    package's ``__init__`` loads its command-line shell, prompt_toolkit and all): an app
    whose functions have no expression never pays it."""
    import cel

    return cel


__all__ = ["Expression", "ExpressionError", "compile_expression", "interpolate"]

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class ExpressionError(ValueError):
    """An expression failed to compile or evaluate; ``str()`` always names the expression."""

    def __init__(self, expression: str, reason: str) -> None:
        # Both go into args so the error pickles across process boundaries.
        super().__init__(expression, reason)
        self.expression = expression
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason} (expression: {self.expression!r})"


def _normalise(value: Any) -> Any:
    """Map JSON values onto the CEL values Inngest's evaluator would see.

    CEL compares int, uint and double loosely (``1 == 1.0``) natively, but arithmetic
    mixes no types. JavaScript senders never distinguish ``1`` from ``1.0`` while Python
    ones do, so whole floats become ints: an expression then behaves the same whichever
    SDK sent the event (the cost: ``event.data.n / 2`` divides as integers for n = 3.0).
    Ints outside int64 become doubles, as in JSON decoders, rather than the uint the
    bindings would pick for 2**63..2**64-1 (uint cannot mix with int even in ``+``).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _I64_MAX else float(value)
    if isinstance(value, float):
        whole = value.is_integer() and _I64_MIN <= value <= _I64_MAX
        return int(value) if whole else value
    if isinstance(value, Mapping):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    return value


# --- the extra functions --------------------------------------------------------------
# They raise on bad input; the bindings turn that into an evaluation error (and log a
# warning on the "cel" logger), which callers treat as "no match".


def _offset(value: Any) -> timedelta:
    """``now_plus``/``now_minus`` take a time string (``"2h45m"``, ``"1d"``) or a duration."""
    return timedelta(milliseconds=to_ms(value))


def _date(value: Any) -> datetime:
    """RFC 3339 / ISO 8601 string or epoch milliseconds -> timestamp (naive means UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise TypeError(f"date() expects a string or a number, got {type(value).__name__}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _b64decode(value: str) -> str:
    # Accept the URL-safe alphabet and missing padding: senders produce both.
    text = value.strip().replace("-", "+").replace("_", "/")
    raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    return raw.decode("utf-8")


def _now() -> datetime:
    return datetime.now(UTC)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowercase": str.lower,
    "uppercase": str.upper,
    "b64decode": _b64decode,
    "json_parse": lambda s: _normalise(orjson.loads(s)),
    "date": _date,
    "now": _now,
    "now_plus": lambda d: _now() + _offset(d),
    "now_minus": lambda d: _now() - _offset(d),
}


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: immutable, cached, safe to share between threads.

    >>> compile_expression("event.data.amount > 100").matches({"event": {"data": {"amount": 250}}})
    True
    """

    source: str
    _program: cel.Program = field(repr=False, compare=False)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate with ``variables`` (e.g. ``event``, ``async``, ``vars``).

        Raises :class:`ExpressionError` on any evaluation error, a missing key included.
        """
        context = _cel().Context(
            variables={name: _normalise(value) for name, value in variables.items()},
            functions=_FUNCTIONS,
        )
        try:
            return self._program.execute(context)
        except Exception as exc:  # the bindings raise KeyError, TypeError, RuntimeError...
            raise ExpressionError(self.source, f"evaluation failed: {exc}") from exc

    def matches(self, variables: Mapping[str, Any]) -> bool:
        """Whether the result is truthy; an evaluation error counts as no match."""
        try:
            return bool(self.evaluate(variables))
        except ExpressionError:
            return False


#: Bounds on what reaches the CEL parser: the Rust parser recurses once per nesting level
#: and per member access, and a chain of about 20,000 ``.b`` overflows its stack (the
#: whole process dies); a few thousand are harmless. Literals do not count: an event's
#: values are spliced into wait conditions as literals of any size.
MAX_EXPRESSION_DEPTH = 256
MAX_MEMBER_ACCESSES = 2_048


def _too_complex(source: str) -> str | None:
    """Why ``source`` is refused before parsing, if it is."""
    depth = deepest = accesses = 0
    for match in _TOKEN.finditer(source):
        if match.lastgroup != "other":
            continue  # spaces, comments, literals, names
        char = match.group()
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
        elif char == ".":
            accesses += 1
    if deepest > MAX_EXPRESSION_DEPTH:
        return f"it nests {deepest} levels deep (at most {MAX_EXPRESSION_DEPTH})"
    if accesses > MAX_MEMBER_ACCESSES:
        return f"it has {accesses} member accesses (at most {MAX_MEMBER_ACCESSES})"
    return None


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Compile ``source``, raising :class:`ExpressionError` on a syntax error.

    Results are cached: functions re-evaluate the same few expressions for every event.
    Unknown variables and functions are only detected at evaluation time. Expressions
    too large or too deep for the parser are refused before it sees them.
    """
    if not isinstance(source, str):
        raise ExpressionError(repr(source), "an expression must be a string")
    problem = _too_complex(source)
    if problem is not None:
        raise ExpressionError(source[:200] + "...", f"too complex to parse: {problem}")
    try:
        program = _cel().compile(source)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the bindings' Rust panics are BaseExceptions
        raise ExpressionError(source, f"invalid expression: {exc}") from exc
    return Expression(source, program)


# --- interpolation ----------------------------------------------------------------------

_STRING_BODIES = (
    r'"""(?:\\[\s\S]|(?!""")[\s\S])*"""',
    r"'''(?:\\[\s\S]|(?!''')[\s\S])*'''",
    r'"(?:\\.|[^"\\\n])*"',
    r"'(?:\\.|[^'\\\n])*'",
)
# Raw strings come first: a backslash escapes nothing in them, so r'a\' ends at the quote.
_TOKEN = re.compile(
    rf"""(?P<space>\s+|//[^\n]*)
      | (?P<string>[bB]?[rR][bB]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
                   | [bB]?(?:{"|".join(_STRING_BODIES)}))
      | (?P<number>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<other>[\s\S])""",
    re.VERBOSE,
)


def _literal(value: Any) -> str:
    """Encode a (normalised) JSON value as a CEL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return 'double("NaN")' if math.isnan(value) else f'double("{value:+}")'
        # Parenthesised so that a following ".f()" or a preceding "-" keeps its meaning.
        return repr(value) if value >= 0 else f"({value!r})"
    if isinstance(value, str):
        # JSON's escapes (\" \\ \n \t \b \f \uXXXX) are a subset of CEL's; ensure_ascii would
        # emit surrogate pairs, which CEL rejects.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_literal(key)}: {_literal(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"cannot write a {type(value).__name__} as a CEL literal")


def interpolate(source: str, event: Mapping[str, Any]) -> str:
    """Replace each ``event.<path>`` reference in ``source`` by its literal value.

    Used when a pause is created: the triggering event is fixed, so only ``async.*`` stays
    dynamic. Strings, ``myevent.x`` and ``async.event.x`` are left alone. Where a path
    does not resolve, the deepest existing value is inlined and the rest of the selection
    kept (``{"id": "a1"}.missing``), so the result fails exactly as the original would;
    inside ``has()`` the last field stays a selection for the same reason.

    >>> interpolate("event.data.id == async.data.id", {"data": {"id": "a1"}})
    '"a1" == async.data.id'

    Limitation: a macro variable named ``event`` (``xs.exists(event, ...)``) is replaced.
    """
    compile_expression(source)  # reject malformed input before tokenising it
    root = _normalise(event)
    tokens = [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(source)]

    def step(index: int, direction: int) -> int:
        """Index of the nearest non-space token in ``direction``, or out of range."""
        index += direction
        while 0 <= index < len(tokens) and tokens[index][0] == "space":
            index += direction
        return index

    def text(index: int) -> str:
        return tokens[index][1] if 0 <= index < len(tokens) else ""

    def is_name(index: int) -> bool:
        return 0 <= index < len(tokens) and tokens[index][0] == "ident"

    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, token = tokens[i]
        if (
            kind != "ident"
            or token != "event"
            or text(step(i, -1)) == "."
            or text(step(i, 1)) == "("
        ):
            out.append(token)
            i += 1
            continue
        # Collect ".field" selections; a name followed by "(" is a method call, not a field.
        chain: list[tuple[str, int]] = []
        at = i
        while text(dot := step(at, 1)) == "." and is_name(name := step(dot, 1)):
            if text(step(name, 1)) == "(":
                break
            chain.append((tokens[name][1], name))
            at = name
        before = step(i, -1)
        if (
            chain
            and text(before) == "("
            and text(step(before, -1)) == "has"
            and text(step(at, 1)) == ")"
        ):
            chain.pop()
        value, end = root, i
        for field_name, position in chain:
            if not isinstance(value, dict) or field_name not in value:
                break
            value, end = value[field_name], position
        try:
            out.append(_literal(value))
        except TypeError as exc:
            raise ExpressionError(source, f"cannot interpolate: {exc}") from exc
        i = end + 1
    return "".join(out)
