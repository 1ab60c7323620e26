"""Function triggers: an event name (with an optional CEL expression) or a cron schedule."""

from __future__ import annotations

import re

import pydantic

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol.cron import CronError, parse_cron
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.protocol.expressions import ExpressionError, compile_expression

# `*` is a trailing wildcard, allowed only right after `/` or `.` (protocol §10).
_WILDCARD = re.compile(r"^[^*]*[/.]\*$")


class TriggerEvent(pydantic.BaseModel):
    """Run the function for each event named ``event``.

    ``event`` may end in ``/*`` or ``.*`` to match a family of names (``"app/*"``).
    ``expression`` is a CEL condition on ``event``, e.g. ``"event.data.amount > 100"``.
    """

    model_config = pydantic.ConfigDict(frozen=True, strict=True)

    event: str
    expression: str | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> TriggerEvent:
        if not self.event or len(self.event) > 255:
            raise FunctionConfigInvalidError(
                f"trigger event name must be 1 to 255 characters, got {self.event!r}"
            )
        if "*" in self.event and not _WILDCARD.match(self.event):
            raise FunctionConfigInvalidError(
                f"trigger event {self.event!r}: '*' may only end the name, after '/' or '.'"
            )
        if self.expression is not None:
            try:
                compile_expression(self.expression)
            except ExpressionError as exc:
                raise FunctionConfigInvalidError(
                    f"trigger on {self.event!r}: invalid expression: {exc}"
                ) from exc
        return self

    def to_wire(self) -> dict[str, str]:
        out = {"event": self.event}
        if self.expression is not None:
            out["expression"] = self.expression
        return out


class TriggerCron(pydantic.BaseModel):
    """Run the function on a 5-field cron schedule, optionally ``TZ=Zone`` prefixed."""

    model_config = pydantic.ConfigDict(frozen=True, strict=True)

    cron: str
    jitter: str | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> TriggerCron:
        try:
            parse_cron(self.cron)
        except CronError as exc:
            raise FunctionConfigInvalidError(str(exc)) from exc
        if self.jitter is not None:
            try:
                jitter = parse_duration_ms(self.jitter)
            except DurationError as exc:
                raise FunctionConfigInvalidError(f"cron {self.cron!r}: jitter: {exc}") from exc
            if not 1_000 <= jitter <= 300_000:
                raise FunctionConfigInvalidError(
                    f"cron {self.cron!r}: jitter must be from 1s to 5m, got {self.jitter!r}"
                )
        return self

    def to_wire(self) -> dict[str, str]:
        out = {"cron": self.cron}
        if self.jitter is not None:
            out["jitter"] = self.jitter
        return out


Trigger = TriggerEvent | TriggerCron
