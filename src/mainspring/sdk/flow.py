"""Flow-control options of a function (protocol §10; names as in the reference SDK).

Each option is a frozen, strict pydantic model that checks its own fields when built and
raises :class:`~mainspring.FunctionConfigInvalidError` naming the option and the field
(``Throttle.period: '0s' is out of range ...``), never a pydantic ``ValidationError``. The
checks that span several options (at most two concurrency limits, batching together with
debounce, ...) are in :meth:`FlowConfig.check`, which :func:`check_flow` (behind
``create_function``) and the server's registration parser both run.

Durations are accepted as whole milliseconds (``int``), a ``timedelta`` or a time string
(``"30s"``, ``"1h30m"``) and kept as whole milliseconds, so options built from any of
these forms compare equal. ``to_wire`` gives the registration shape of protocol §1.3,
exactly as the reference SDK sends it (periods as the largest whole unit: ``"1m"``,
``"1d"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import pydantic

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol.durations import format_duration, to_ms
from mainspring.sdk.option_base import (
    Duration,
    Option,
    OptionError,
    at_least,
    check_expression,
    checked_duration_ms,
    show,
)

_SECOND = 1_000
_DAY = 86_400_000

#: Priority offsets are clamped to this many seconds either way (protocol §10).
MAX_PRIORITY_SECONDS = 43_200
#: Most step-level concurrency limits one function may set (protocol §1.3).
MAX_CONCURRENCY_LIMITS = 2
#: Smallest and largest batch (the reference's cloud cap is lower; this bounds one run's
#: events).
MIN_BATCH_SIZE = 2
MAX_BATCH_SIZE = 10_000

#: The range of each duration, in milliseconds (protocol §1.3 and §10).
THROTTLE_PERIOD_MS = (_SECOND, 7 * _DAY)
RATE_LIMIT_PERIOD_MS = (_SECOND, _DAY)
DEBOUNCE_PERIOD_MS = (_SECOND, 7 * _DAY)
DEBOUNCE_TIMEOUT_MS = (_SECOND, 7 * _DAY)
BATCH_TIMEOUT_MS = (_SECOND, 60 * _SECOND)


class Concurrency(Option):
    """At most ``limit`` step calls of the function in flight at once.

    ``key`` (CEL on ``event``) gives each distinct value its own limit;
    ``scope="env"`` or ``"account"`` shares the limit (per key value) with every function
    that uses the same key; those scopes need a ``key``. Runs that sleep or wait for an
    event hold no slot.
    """

    limit: int
    key: str | None = None
    scope: Literal["fn", "env", "account"] | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        return at_least("Concurrency", "limit", value, 1)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("Concurrency", "key", value)
        return value

    @pydantic.model_validator(mode="after")
    def _check(self) -> Concurrency:
        if self.scope in ("env", "account") and self.key is None:
            raise OptionError("Concurrency", "key", f"is required with the {self.scope!r} scope")
        return self

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit}
        if self.key is not None:
            out["key"] = self.key
        if self.scope is not None:
            out["scope"] = self.scope
        return out


class RunConcurrency(Option):
    """At most ``limit`` *runs* of the function going at once, sleeping and waiting ones
    included: a run holds its slot from its first call until it finishes (protocol §10's
    ``{"fn": [...]}`` form). ``key`` (CEL on ``event``) gives each value its own limit."""

    limit: int
    key: str | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        return at_least("RunConcurrency", "limit", value, 1)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("RunConcurrency", "key", value)
        return value

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit}
        if self.key is not None:
            out["key"] = self.key
        out["scope"] = "fn"
        return out


class Throttle(Option):
    """Start at most ``limit`` runs per ``period`` (per ``key`` value), ``burst`` of them
    at once; runs over the limit are delayed, never dropped. ``period`` is 1s to 7d;
    ``burst`` defaults to 1 (``None`` means the default, as in the reference SDK)."""

    limit: int
    period: Duration
    key: str | None = None
    burst: int = 1

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        return at_least("Throttle", "limit", value, 1)

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: Duration) -> int:
        return checked_duration_ms("Throttle", "period", value, THROTTLE_PERIOD_MS)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("Throttle", "key", value)
        return value

    @pydantic.field_validator("burst", mode="before")
    @classmethod
    def _default_burst(cls, value: object) -> object:
        # The reference SDK types it ``int | None``; None there means the default.
        return 1 if value is None else value

    @pydantic.field_validator("burst")
    @classmethod
    def _check_burst(cls, value: int) -> int:
        return at_least("Throttle", "burst", value, 1)

    def period_ms(self) -> int:
        return int(to_ms(self.period))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "limit": self.limit,
            "period": format_duration(self.period_ms()),
            "burst": self.burst,
        }
        if self.key is not None:
            out["key"] = self.key
        return out


class RateLimit(Option):
    """Start at most ``limit`` runs per ``period`` (per ``key`` value); events over the
    limit start nothing (their runs are recorded as skipped). ``period`` is 1s to 24h."""

    limit: int
    period: Duration
    key: str | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        return at_least("RateLimit", "limit", value, 1)

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: Duration) -> int:
        return checked_duration_ms("RateLimit", "period", value, RATE_LIMIT_PERIOD_MS)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("RateLimit", "key", value)
        return value

    def period_ms(self) -> int:
        return int(to_ms(self.period))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit, "period": format_duration(self.period_ms())}
        if self.key is not None:
            out["key"] = self.key
        return out


class Debounce(Option):
    """Start one run, with the latest event, once no matching event (per ``key`` value)
    came for ``period`` (1s to 7d); ``timeout`` (1s to 7d, not shorter than ``period``)
    caps how long the run may be put off."""

    period: Duration
    key: str | None = None
    timeout: Duration | None = None

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: Duration) -> int:
        return checked_duration_ms("Debounce", "period", value, DEBOUNCE_PERIOD_MS)

    @pydantic.field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: Duration | None) -> int | None:
        if value is None:
            return None
        return checked_duration_ms("Debounce", "timeout", value, DEBOUNCE_TIMEOUT_MS)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("Debounce", "key", value)
        return value

    @pydantic.model_validator(mode="after")
    def _check(self) -> Debounce:
        timeout = self.timeout_ms()
        if timeout is not None and timeout < self.period_ms():
            raise OptionError(
                "Debounce",
                "timeout",
                f"{format_duration(timeout)} is shorter than the period "
                f"{format_duration(self.period_ms())}",
            )
        return self

    def period_ms(self) -> int:
        return int(to_ms(self.period))

    def timeout_ms(self) -> int | None:
        return None if self.timeout is None else int(to_ms(self.timeout))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"period": format_duration(self.period_ms())}
        if self.key is not None:
            out["key"] = self.key
        timeout = self.timeout_ms()
        if timeout is not None:
            out["timeout"] = format_duration(timeout)
        return out


class Batch(Option):
    """Run once for up to ``max_size`` events (2 to 10,000; per ``key`` value), or for those
    that came within ``timeout`` (1s to 60s, required) of the first; ``ctx.events`` holds
    them in order. Events for which ``if_exp`` is false run alone at once."""

    max_size: int
    timeout: Duration | None = None
    key: str | None = None
    if_exp: str | None = None

    @pydantic.field_validator("max_size")
    @classmethod
    def _check_max_size(cls, value: int) -> int:
        if not MIN_BATCH_SIZE <= value <= MAX_BATCH_SIZE:
            raise OptionError(
                "Batch",
                "max_size",
                f"must be from {MIN_BATCH_SIZE} to {MAX_BATCH_SIZE:,}, got {value}",
            )
        return value

    @pydantic.field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: Duration | None) -> int | None:
        if value is None:
            return None
        return checked_duration_ms("Batch", "timeout", value, BATCH_TIMEOUT_MS)

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("Batch", "key", value)
        return value

    @pydantic.field_validator("if_exp")
    @classmethod
    def _check_if(cls, value: str | None) -> str | None:
        check_expression("Batch", "if_exp", value)
        return value

    @pydantic.model_validator(mode="after")
    def _check(self) -> Batch:
        if self.timeout is None:
            raise OptionError("Batch", "timeout", "is required (from 1s to 1m)")
        return self

    @classmethod
    def wire_field(cls, field: str | None) -> str | None:
        return {"max_size": "maxSize", "if_exp": "if"}.get(field or "", field)

    def timeout_ms(self) -> int:
        return 0 if self.timeout is None else int(to_ms(self.timeout))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "maxSize": self.max_size,
            "timeout": format_duration(self.timeout_ms()),
        }
        if self.key is not None:
            out["key"] = self.key
        if self.if_exp is not None:
            out["if"] = self.if_exp
        return out


class Priority(Option):
    """``run`` (CEL on ``event``) gives a number of seconds: a run's work is queued as if
    it had arrived that much earlier (later for a negative number), within ±12 h. Not
    allowed together with batching."""

    run: str | None = None

    @pydantic.field_validator("run")
    @classmethod
    def _check_run(cls, value: str | None) -> str | None:
        check_expression("Priority", "run", value)
        return value

    def to_wire(self) -> dict[str, Any]:
        return {} if self.run is None else {"run": self.run}


class Singleton(Option):
    """At most one unfinished run (per ``key`` value): a new run is skipped
    (``mode="skip"``) or replaces the one going on, which is cancelled (``"cancel"``)."""

    mode: Literal["skip", "cancel"]
    key: str | None = None

    @pydantic.field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        check_expression("Singleton", "key", value)
        return value

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class FlowConfig:
    """Every flow-control option of one function.

    Build it through :func:`check_flow` (or the registration parser), which run
    :meth:`check`; ``priority`` is ``None`` rather than a ``Priority`` without ``run``.
    """

    concurrency: tuple[Concurrency, ...] = ()
    run_concurrency: RunConcurrency | None = None
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch_events: Batch | None = None
    priority: Priority | None = None
    idempotency: str | None = None
    singleton: Singleton | None = None

    @property
    def empty(self) -> bool:
        return self == _NO_FLOW

    def check(self, *, has_cancel: bool = False, wire: bool = False) -> None:
        """Raise :class:`~mainspring.FunctionConfigInvalidError` if the options do not go
        together (protocol §1.3's server rules). Messages name the ``create_function``
        arguments, or the registration fields when ``wire`` is true."""
        if len(self.concurrency) > MAX_CONCURRENCY_LIMITS:
            where = "concurrency.step" if wire and self.run_concurrency else "concurrency"
            what = "step limits" if wire else "Concurrency limits"
            raise FunctionConfigInvalidError(
                f"{where}: at most {MAX_CONCURRENCY_LIMITS} {what}, got {len(self.concurrency)}"
            )
        if self.idempotency is not None:
            check_expression("idempotency", None, self.idempotency)
        if self.batch_events is None:
            return
        clashes = [
            name
            for name, present in (
                ("cancel", has_cancel),
                ("debounce", self.debounce is not None),
                ("singleton", self.singleton is not None),
                (
                    "priority.run" if wire else "priority",
                    self.priority is not None and self.priority.run is not None,
                ),
            )
            if present
        ]
        if clashes:
            raise FunctionConfigInvalidError(
                f"{'batchEvents' if wire else 'batch_events'}: cannot be combined with "
                f"{', '.join(clashes)} (a batched run has many triggering events)"
            )

    def concurrency_wire(self) -> Any:
        """``concurrency`` as registered: a list of step limits, or ``{"fn", "step"}``
        when a run-level limit is set (protocol §10)."""
        steps = [c.to_wire() for c in self.concurrency]
        if self.run_concurrency is None:
            return steps or None
        out: dict[str, Any] = {"fn": [self.run_concurrency.to_wire()]}
        if steps:
            out["step"] = steps
        return out

    def to_wire(self) -> dict[str, Any]:
        """The registration fields of protocol §1.3 that are set."""
        out: dict[str, Any] = {}
        concurrency = self.concurrency_wire()
        if concurrency is not None:
            out["concurrency"] = concurrency
        if self.throttle is not None:
            out["throttle"] = self.throttle.to_wire()
        if self.rate_limit is not None:
            out["rateLimit"] = self.rate_limit.to_wire()
        if self.debounce is not None:
            out["debounce"] = self.debounce.to_wire()
        if self.batch_events is not None:
            out["batchEvents"] = self.batch_events.to_wire()
        if self.priority is not None and self.priority.run is not None:
            out["priority"] = self.priority.to_wire()
        if self.idempotency is not None:
            out["idempotency"] = self.idempotency
        if self.singleton is not None:
            out["singleton"] = self.singleton.to_wire()
        return out


_NO_FLOW = FlowConfig()


def _of(option: str, value: object, kind: type[Any], expected: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise FunctionConfigInvalidError(f"{option}: expected {expected}, got {show(value)}")


def _split_concurrency(
    concurrency: object,
) -> tuple[tuple[Concurrency, ...], RunConcurrency | None]:
    if concurrency is None:
        return (), None
    if isinstance(concurrency, Concurrency | RunConcurrency):
        concurrency = [concurrency]
    if not isinstance(concurrency, Sequence) or isinstance(concurrency, str | bytes):
        raise FunctionConfigInvalidError(
            "concurrency: expected a list of Concurrency or RunConcurrency, "
            f"got {show(concurrency)}"
        )
    steps: list[Concurrency] = []
    runs: list[RunConcurrency] = []
    for position, item in enumerate(concurrency):
        if isinstance(item, Concurrency):
            steps.append(item)
        elif isinstance(item, RunConcurrency):
            runs.append(item)
        else:
            raise FunctionConfigInvalidError(
                f"concurrency[{position}]: expected Concurrency or RunConcurrency, got {show(item)}"
            )
    if len(runs) > 1:
        raise FunctionConfigInvalidError(
            f"concurrency: at most one RunConcurrency limit, got {len(runs)}"
        )
    return tuple(steps), runs[0] if runs else None


def check_flow(
    fn_id: str,
    *,
    concurrency: Sequence[Concurrency | RunConcurrency] | None = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    batch_events: Batch | None = None,
    priority: Priority | None = None,
    idempotency: str | None = None,
    singleton: Singleton | None = None,
    has_cancel: bool = False,
) -> FlowConfig:
    """The checked :class:`FlowConfig` of ``create_function``'s arguments; errors name the
    function and the argument (``function 'f': throttle: expected Throttle, got int 5``)."""
    try:
        steps, run = _split_concurrency(concurrency)
        _of("throttle", throttle, Throttle, "a Throttle")
        _of("rate_limit", rate_limit, RateLimit, "a RateLimit")
        _of("debounce", debounce, Debounce, "a Debounce")
        _of("batch_events", batch_events, Batch, "a Batch")
        _of("priority", priority, Priority, "a Priority")
        _of("singleton", singleton, Singleton, "a Singleton")
        _of("idempotency", idempotency, str, "a CEL expression string")
        flow = FlowConfig(
            concurrency=steps,
            run_concurrency=run,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch_events=batch_events,
            priority=priority if priority is not None and priority.run is not None else None,
            idempotency=idempotency,
            singleton=singleton,
        )
        flow.check(has_cancel=has_cancel)
    except FunctionConfigInvalidError as exc:
        raise FunctionConfigInvalidError(f"function {fn_id!r}: {exc}") from None
    return flow
