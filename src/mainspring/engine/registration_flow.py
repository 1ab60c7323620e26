"""The flow-control fields of a registered function (protocol §1.3, §10).

``concurrency``, ``throttle``, ``rateLimit``, ``debounce``, ``batchEvents``, ``priority``,
``idempotency`` and ``singleton`` become the function's
:class:`~mainspring.sdk.flow.FlowConfig`, checked with the reference server's rules. Each
JSON value is first checked for its type and range here (:mod:`registration_schema`), then
handed to the option class, whose own checks name the option's field; either way a problem
is an :class:`~mainspring.engine.registration_schema.Invalid` naming the wire field
(``throttle.period: '0s' is out of range: must be from 1s to 7d``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from mainspring.engine.registration_schema import (
    MAX_EXPRESSION_CHARS,
    Invalid,
    Node,
    array,
    at,
    duration_ms,
    integer,
    join,
    obj,
    show,
    string,
)
from mainspring.errors import FunctionConfigInvalidError
from mainspring.sdk.flow import (
    BATCH_TIMEOUT_MS,
    DEBOUNCE_PERIOD_MS,
    DEBOUNCE_TIMEOUT_MS,
    MAX_CONCURRENCY_LIMITS,
    RATE_LIMIT_PERIOD_MS,
    THROTTLE_PERIOD_MS,
    Batch,
    Concurrency,
    Debounce,
    FlowConfig,
    Priority,
    RateLimit,
    RunConcurrency,
    Singleton,
    Throttle,
)
from mainspring.sdk.option_base import OptionError

#: How a wire value is read: ``int`` (a JSON integer), ``key`` (a CEL expression, compiled
#: by the option), ``duration`` (a time string within ``bounds``), ``lower`` (a string
#: matched case-insensitively).
_Kind = Literal["int", "key", "duration", "lower"]


class _Spec(NamedTuple):
    attribute: str
    kind: _Kind
    bounds: tuple[int, int] | None = None


def _value(path: str, value: Any, spec: _Spec) -> Any:
    if spec.kind == "int":
        return integer(path, value)
    if spec.kind == "duration":
        low, high = spec.bounds or (0, 0)
        duration_ms(path, value, low=low, high=high)
        return value
    if spec.kind == "key":
        return string(path, value, most=MAX_EXPRESSION_CHARS)
    return string(path, value).lower()


def _option(
    path: str,
    raw: Any,
    cls: type[Any],
    fields: Mapping[str, _Spec],
    **defaults: Any,
) -> Any:
    """Build option ``cls`` from the JSON object ``raw``; ``fields`` maps each wire key to
    the attribute and kind. Every problem names ``path`` and the wire key."""
    node = obj(path, raw)
    values = dict(defaults)
    for wire, spec in fields.items():
        where, value = node.get(wire)
        if value is not None:
            values[spec.attribute] = _value(where, value, spec)
    try:
        return cls(**values)
    except OptionError as exc:
        field = cls.wire_field(exc.field)
        raise Invalid(join(path, field) if field else path, exc.problem) from None


_LIMIT_FIELDS: Mapping[str, _Spec] = {
    "limit": _Spec("limit", "int"),
    "key": _Spec("key", "key"),
    "scope": _Spec("scope", "lower"),
}
_RUN_LIMIT_FIELDS = {name: spec for name, spec in _LIMIT_FIELDS.items() if name != "scope"}
_THROTTLE_FIELDS: Mapping[str, _Spec] = {
    "limit": _Spec("limit", "int"),
    "period": _Spec("period", "duration", THROTTLE_PERIOD_MS),
    "burst": _Spec("burst", "int"),
    "key": _Spec("key", "key"),
}
_RATE_LIMIT_FIELDS: Mapping[str, _Spec] = {
    "limit": _Spec("limit", "int"),
    "period": _Spec("period", "duration", RATE_LIMIT_PERIOD_MS),
    "key": _Spec("key", "key"),
}
_DEBOUNCE_FIELDS: Mapping[str, _Spec] = {
    "period": _Spec("period", "duration", DEBOUNCE_PERIOD_MS),
    "key": _Spec("key", "key"),
    "timeout": _Spec("timeout", "duration", DEBOUNCE_TIMEOUT_MS),
}
_BATCH_FIELDS: Mapping[str, _Spec] = {
    "maxSize": _Spec("max_size", "int"),
    "timeout": _Spec("timeout", "duration", BATCH_TIMEOUT_MS),
    "key": _Spec("key", "key"),
    "if": _Spec("if_exp", "key"),
}
_PRIORITY_FIELDS: Mapping[str, _Spec] = {"run": _Spec("run", "key")}
_SINGLETON_FIELDS: Mapping[str, _Spec] = {
    "mode": _Spec("mode", "lower"),
    "key": _Spec("key", "key"),
}


def _step_limits(path: str, raw: Any) -> list[Concurrency]:
    items = array(path, raw, what="an array of limits")
    if len(items) > MAX_CONCURRENCY_LIMITS:
        # As FlowConfig.check says it, before building thousands of limits.
        raise Invalid(path, f"at most {MAX_CONCURRENCY_LIMITS} step limits, got {len(items)}")
    return [
        _option(at(path, index), item, Concurrency, _LIMIT_FIELDS)
        for index, item in enumerate(items)
    ]


def _run_limit(path: str, raw: Any) -> RunConcurrency | None:
    items = array(path, raw, what="an array of at most one limit")
    if len(items) > 1:
        raise Invalid(path, f"at most one run limit, got {len(items)}")
    if not items:
        return None
    where = at(path, 0)
    if isinstance(items[0], Mapping):
        scope_path, scope = Node(where, items[0]).get("scope")
        if scope is not None and string(scope_path, scope).lower() != "fn":
            raise Invalid(scope_path, f"a run limit has the 'fn' scope only, got {show(scope)}")
    limit: RunConcurrency = _option(where, items[0], RunConcurrency, _RUN_LIMIT_FIELDS)
    return limit


def _concurrency(path: str, raw: Any) -> tuple[list[Concurrency], RunConcurrency | None]:
    """Every form of protocol §10: ``N``, ``{limit, key?, scope?}``, an array of those,
    or ``{"fn": [...], "step": [...]}``."""
    if raw is None:
        return [], None
    if isinstance(raw, int) and not isinstance(raw, bool):
        limit = integer(path, raw)
        return [_option(path, {"limit": limit}, Concurrency, _LIMIT_FIELDS)], None
    if isinstance(raw, list):
        return _step_limits(path, raw), None
    if not isinstance(raw, Mapping):
        raise Invalid(
            path, f"expected an integer, an object or an array of limits, got {show(raw)}"
        )
    node = Node(path, raw)
    split = node.has("fn") or node.has("step")
    if split and node.has("limit"):
        raise Invalid(path, "has both a limit and fn/step limits")
    if not split:
        return [_option(path, raw, Concurrency, _LIMIT_FIELDS)], None
    fn_path, fn_raw = node.get("fn")
    step_path, step_raw = node.get("step")
    run = None if fn_raw is None else _run_limit(fn_path, fn_raw)
    steps = [] if step_raw is None else _step_limits(step_path, step_raw)
    return steps, run


def parse_flow(node: Node, *, has_cancel: bool) -> FlowConfig:
    """The flow-control options of the registered function ``node``, checked as the
    reference server does; problems name the wire field (``throttle.period: ...``)."""
    where, raw = node.get("concurrency")
    steps, run = _concurrency(where, raw)
    throttle = rate_limit = debounce = batch = priority = singleton = None
    where, raw = node.get("throttle")
    if raw is not None:
        throttle = _option(where, raw, Throttle, _THROTTLE_FIELDS)
    where, raw = node.get("rateLimit")
    if raw is not None:
        rate_limit = _option(where, raw, RateLimit, _RATE_LIMIT_FIELDS)
    where, raw = node.get("debounce")
    if raw is not None:
        debounce = _option(where, raw, Debounce, _DEBOUNCE_FIELDS)
    where, raw = node.get("batchEvents")
    if raw is not None:
        batch = _option(where, raw, Batch, _BATCH_FIELDS)
    where, raw = node.get("priority")
    if raw is not None:
        parsed: Priority = _option(where, raw, Priority, _PRIORITY_FIELDS)
        priority = parsed if parsed.run is not None else None
    where, raw = node.get("singleton")
    if raw is not None:
        # The reference server's zero value of the mode is "skip".
        singleton = _option(where, raw, Singleton, _SINGLETON_FIELDS, mode="skip")
    where, idempotency = node.get("idempotency")
    if idempotency is not None:
        string(where, idempotency, most=MAX_EXPRESSION_CHARS, what="a CEL expression string")
    flow = FlowConfig(
        concurrency=tuple(steps),
        run_concurrency=run,
        throttle=throttle,
        rate_limit=rate_limit,
        debounce=debounce,
        batch_events=batch,
        priority=priority,
        idempotency=idempotency,
        singleton=singleton,
    )
    try:
        flow.check(has_cancel=has_cancel, wire=True)
    except FunctionConfigInvalidError as exc:
        # FlowConfig's messages start with the wire field: "batchEvents: cannot be ...".
        field, _, problem = str(exc).partition(": ")
        raise Invalid(join(node.path, field), problem) from None
    return flow
