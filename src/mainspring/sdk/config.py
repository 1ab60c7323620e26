"""Function options beyond triggers: cancellation conditions and timeouts."""

from __future__ import annotations

import datetime

import pydantic

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol.durations import DurationError, format_duration
from mainspring.protocol.expressions import ExpressionError, compile_expression

Duration = int | datetime.timedelta | str


def _duration(what: str, value: Duration | None) -> str | None:
    if value is None:
        return None
    try:
        return format_duration(value)
    except DurationError as exc:
        raise FunctionConfigInvalidError(f"{what}: {exc}") from exc


class Cancel(pydantic.BaseModel):
    """Cancel a run when an event named ``event`` arrives (after the run started).

    ``if_exp`` is a CEL condition with ``event`` (the run's triggering event) and
    ``async`` (the incoming event), e.g. ``"event.data.order_id == async.data.order_id"``.
    ``timeout`` bounds how long the condition stays armed (default: a year).
    """

    model_config = pydantic.ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event: str
    if_exp: str | None = None
    timeout: Duration | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> Cancel:
        if not self.event:
            raise FunctionConfigInvalidError("Cancel: event is required")
        if self.if_exp is not None:
            try:
                compile_expression(self.if_exp)
            except ExpressionError as exc:
                raise FunctionConfigInvalidError(f"Cancel on {self.event!r}: {exc}") from exc
        _duration(f"Cancel on {self.event!r}: timeout", self.timeout)
        return self

    def to_wire(self) -> dict[str, str]:
        out = {"event": self.event}
        if self.if_exp is not None:
            out["if"] = self.if_exp
        timeout = _duration("Cancel timeout", self.timeout)
        if timeout is not None:
            out["timeout"] = timeout
        return out


class Timeouts(pydantic.BaseModel):
    """Cancel runs that have not ``start``-ed, or not ``finish``-ed after starting, in time."""

    model_config = pydantic.ConfigDict(frozen=True, arbitrary_types_allowed=True)

    start: Duration | None = None
    finish: Duration | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> Timeouts:
        _duration("Timeouts.start", self.start)
        _duration("Timeouts.finish", self.finish)
        return self

    def to_wire(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in ("start", "finish"):
            value = _duration(f"Timeouts.{key}", getattr(self, key))
            if value is not None:
                out[key] = value
        return out
