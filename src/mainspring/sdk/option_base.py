"""The machinery the flow-control options share (:mod:`mainspring.sdk.flow`): strict pydantic
models whose every problem is an :class:`OptionError` naming the option and the field, and
the field checks (ranges of durations, CEL expressions, lower bounds)."""

from __future__ import annotations

import datetime
import types
import typing
from typing import Any, Literal

import pydantic

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol.durations import DurationError, format_duration, to_ms
from mainspring.protocol.expressions import ExpressionError, compile_expression

Duration = int | datetime.timedelta | str

_DAY = 86_400_000


class OptionError(FunctionConfigInvalidError):
    """An option refused one of its fields.

    ``option`` is the class name, ``field`` the attribute (``None`` for the option as a
    whole) and ``problem`` what is wrong, kept apart so the registration parser can name
    the wire field (``batchEvents.maxSize``) instead of the attribute (``Batch.max_size``).
    """

    def __init__(self, option: str, field: str | None, problem: str) -> None:
        super().__init__(f"{option}.{field}: {problem}" if field else f"{option}: {problem}")
        self.option = option
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.option, self.field, self.problem))


def show(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def show_duration(value: object) -> str:
    return f"{value} ms" if isinstance(value, int) else repr(value)


def span(ms: int) -> str:
    """A bound as people write it: ``7d`` rather than ``1w``."""
    return f"{ms // _DAY}d" if ms >= _DAY and ms % _DAY == 0 else format_duration(ms)


def checked_duration_ms(option: str, field: str, value: Duration, bounds: tuple[int, int]) -> int:
    """``value`` in whole milliseconds, checked to lie within ``bounds``."""
    try:
        ms = to_ms(value)
    except DurationError as exc:
        raise OptionError(option, field, str(exc)) from None
    whole = round(ms)
    if abs(ms - whole) > 1e-6:
        raise OptionError(
            option, field, f"{show_duration(value)} is not a whole number of milliseconds"
        )
    low, high = bounds
    if not low <= whole <= high:
        raise OptionError(
            option,
            field,
            f"{show_duration(value)} is out of range: must be from {span(low)} to {span(high)}",
        )
    return whole


def check_expression(option: str, field: str | None, source: str | None) -> None:
    if source is None:
        return
    if not source.strip():
        raise OptionError(option, field, "must be a non-empty CEL expression")
    try:
        compile_expression(source)
    except ExpressionError as exc:
        raise OptionError(option, field, str(exc)) from None


def at_least(option: str, field: str, value: int, low: int) -> int:
    if value < low:
        raise OptionError(option, field, f"must be at least {low}, got {value}")
    return value


def expected(annotation: Any) -> str:
    """What a field's annotation accepts, in words."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    args = tuple(arg for arg in args if arg is not type(None))
    if datetime.timedelta in args:
        return (
            "a duration (whole milliseconds as an int, a timedelta or a time string such as '1m')"
        )
    if len(args) == 1 and typing.get_origin(args[0]) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(args[0]))
    if args == (int,):
        return "an int"
    if args == (str,):
        return "a string"
    return " or ".join(getattr(arg, "__name__", str(arg)) for arg in args)


def from_validation_error(cls: type[Option], exc: pydantic.ValidationError) -> OptionError:
    """The first problem pydantic found, as an :class:`OptionError` in our words."""
    option = cls.__name__
    details = exc.errors(include_url=False)
    if not details:  # pragma: no cover - pydantic always reports at least one
        return OptionError(option, None, str(exc))
    first = details[0]
    loc = first.get("loc") or ()
    field = str(loc[0]) if loc else None
    kind = first.get("type")
    info = cls.model_fields.get(field) if field is not None else None
    if kind == "missing":
        problem = "is required"
    elif kind == "extra_forbidden":
        problem = f"is not an option of {option} (it takes {', '.join(cls.model_fields)})"
    elif info is not None:
        problem = f"expected {expected(info.annotation)}, got {show(first.get('input'))}"
    else:
        problem = str(first.get("msg"))
    return OptionError(option, field, problem)


class Option(pydantic.BaseModel):
    """Base of the options: strict types, frozen, unknown fields refused, and every
    problem raised as :class:`OptionError` (a ``FunctionConfigInvalidError``)."""

    model_config = pydantic.ConfigDict(frozen=True, strict=True, extra="forbid")

    def __init__(self, /, *args: Any, **data: Any) -> None:
        if args:
            raise OptionError(
                type(self).__name__, None, f"takes keyword arguments only, got {len(args)}"
            )
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise from_validation_error(type(self), exc) from None

    @classmethod
    def wire_field(cls, field: str | None) -> str | None:
        """The registration (JSON) name of attribute ``field``."""
        return field
