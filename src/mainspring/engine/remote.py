"""Functions an app registers over HTTP (``POST /fn/register``, protocol §1.3).

A registered function becomes an ordinary :class:`~mainspring.sdk.function.Function` whose
handler is never called in this process: the engine calls its serve URL instead. Keys are
matched case-insensitively, as the reference server's JSON decoding does (the Python SDK
sends ``appname``, the TypeScript one ``appName``); unknown keys are ignored.

Flow-control fields (``concurrency``, ``throttle``, ``rateLimit``, ``debounce``,
``batchEvents``, ``priority``, ``idempotency``, ``singleton``) become the function's
:class:`~mainspring.sdk.flow.FlowConfig`, checked with the reference server's rules; a
malformed value fails the registration with the function id and the field named
(``{"app-f": "throttle.period: '0s' is out of range ..."}``), never a server error.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any, Literal

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol import consts
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.sdk.config import Cancel, Timeouts
from mainspring.sdk.context import Context
from mainspring.sdk.flow import (
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
from mainspring.sdk.function import Function
from mainspring.sdk.option_base import OptionError
from mainspring.sdk.triggers import Trigger, TriggerCron, TriggerEvent


class RegistrationError(ValueError):
    """A register request the server refuses; ``errors`` lists problems per function."""

    def __init__(self, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    app_name: str
    url: str
    sdk: str
    functions: list[Function[Any]]
    urls: dict[str, str]
    #: The register body as received, kept so a restarted server can serve the app again.
    body: Mapping[str, Any] = dataclasses.field(default_factory=dict)


async def _remote_handler(ctx: Context) -> None:
    raise RuntimeError("a registered function runs in its app, not in the server")


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """A key, matched case-insensitively."""
    if key in obj:
        return obj[key]
    lower = key.lower()
    for name, value in obj.items():
        if isinstance(name, str) and name.lower() == lower:
            return value
    return None


def _triggers(raw: Any) -> list[Trigger]:
    if not isinstance(raw, list) or not raw:
        raise FunctionConfigInvalidError("at least one trigger is required")
    triggers: list[Trigger] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise FunctionConfigInvalidError(f"trigger {item!r} is not an object")
        if _get(item, "event"):
            triggers.append(
                TriggerEvent(event=_get(item, "event"), expression=_get(item, "expression"))
            )
        elif _get(item, "cron"):
            triggers.append(TriggerCron(cron=_get(item, "cron"), jitter=_get(item, "jitter")))
        else:
            raise FunctionConfigInvalidError(f"trigger {dict(item)!r} has neither event nor cron")
    return triggers


# -- flow control (protocol §1.3, §10) -------------------------------------------------------


def _show(value: Any) -> str:
    """A received JSON value, short, as JSON spells it."""
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: str, problem: str) -> FunctionConfigInvalidError:
    return FunctionConfigInvalidError(f"{path}: {problem}")


#: How a wire value is read: ``int`` (a JSON integer), ``str``, ``duration`` (a time
#: string), ``lower`` (a string matched case-insensitively).
_Kind = Literal["int", "str", "duration", "lower"]


def _value(path: str, value: Any, kind: _Kind) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, f"expected an integer, got {_show(value)}")
        return value
    if not isinstance(value, str):
        expected = "a time string such as '1m'" if kind == "duration" else "a string"
        raise _bad(path, f"expected {expected}, got {_show(value)}")
    return value.lower() if kind == "lower" else value


def _option(
    path: str,
    raw: Any,
    cls: type[Any],
    fields: Mapping[str, tuple[str, _Kind]],
    **defaults: Any,
) -> Any:
    """Build option ``cls`` from the JSON object ``raw``; ``fields`` maps each wire key to
    the attribute and kind. Every problem names ``path`` and the wire key."""
    if not isinstance(raw, Mapping):
        raise _bad(path, f"expected an object, got {_show(raw)}")
    values = dict(defaults)
    for wire, (attribute, kind) in fields.items():
        value = _get(raw, wire)
        if value is not None:
            values[attribute] = _value(f"{path}.{wire}", value, kind)
    try:
        return cls(**values)
    except OptionError as exc:
        field = cls.wire_field(exc.field)
        raise _bad(f"{path}.{field}" if field else path, exc.problem) from None


_LIMIT_FIELDS: Mapping[str, tuple[str, _Kind]] = {
    "limit": ("limit", "int"),
    "key": ("key", "str"),
    "scope": ("scope", "lower"),
}


def _step_limits(path: str, raw: Any) -> list[Concurrency]:
    if not isinstance(raw, list):
        raise _bad(path, f"expected an array of limits, got {_show(raw)}")
    return [
        _option(f"{path}[{index}]", item, Concurrency, _LIMIT_FIELDS)
        for index, item in enumerate(raw)
    ]


def _run_limit(path: str, raw: Any) -> RunConcurrency | None:
    if not isinstance(raw, list):
        raise _bad(path, f"expected an array of at most one limit, got {_show(raw)}")
    if len(raw) > 1:
        raise _bad(path, f"at most one run limit, got {len(raw)}")
    if not raw:
        return None
    item = raw[0]
    where = f"{path}[0]"
    if isinstance(item, Mapping):
        scope = _get(item, "scope")
        if scope is not None and _value(f"{where}.scope", scope, "lower") != "fn":
            raise _bad(f"{where}.scope", f"a run limit has the 'fn' scope only, got {_show(scope)}")
    fields = {name: spec for name, spec in _LIMIT_FIELDS.items() if name != "scope"}
    limit: RunConcurrency = _option(where, item, RunConcurrency, fields)
    return limit


def _concurrency(raw: Any) -> tuple[list[Concurrency], RunConcurrency | None]:
    """Every form of protocol §10: ``N``, ``{limit, key?, scope?}``, an array of those,
    or ``{"fn": [...], "step": [...]}``."""
    if raw is None:
        return [], None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [_option("concurrency", {"limit": raw}, Concurrency, _LIMIT_FIELDS)], None
    if isinstance(raw, list):
        return _step_limits("concurrency", raw), None
    if not isinstance(raw, Mapping):
        raise _bad(
            "concurrency",
            f"expected an integer, an object or an array of limits, got {_show(raw)}",
        )
    split = any(_get(raw, name) is not None for name in ("fn", "step"))
    if split and _get(raw, "limit") is not None:
        raise _bad("concurrency", "has both a limit and fn/step limits")
    if not split:
        return [_option("concurrency", raw, Concurrency, _LIMIT_FIELDS)], None
    fn_raw, step_raw = _get(raw, "fn"), _get(raw, "step")
    run = None if fn_raw is None else _run_limit("concurrency.fn", fn_raw)
    steps = [] if step_raw is None else _step_limits("concurrency.step", step_raw)
    return steps, run


def _flow(raw: Mapping[str, Any], *, has_cancel: bool) -> FlowConfig:
    """The flow-control options of one registered function, checked as the reference
    server does; problems name the wire field (``throttle.period: ...``)."""
    steps, run = _concurrency(_get(raw, "concurrency"))
    throttle = rate_limit = debounce = batch = priority = singleton = None
    if (value := _get(raw, "throttle")) is not None:
        throttle = _option(
            "throttle",
            value,
            Throttle,
            {
                "limit": ("limit", "int"),
                "period": ("period", "duration"),
                "burst": ("burst", "int"),
                "key": ("key", "str"),
            },
        )
    if (value := _get(raw, "rateLimit")) is not None:
        rate_limit = _option(
            "rateLimit",
            value,
            RateLimit,
            {"limit": ("limit", "int"), "period": ("period", "duration"), "key": ("key", "str")},
        )
    if (value := _get(raw, "debounce")) is not None:
        debounce = _option(
            "debounce",
            value,
            Debounce,
            {
                "period": ("period", "duration"),
                "key": ("key", "str"),
                "timeout": ("timeout", "duration"),
            },
        )
    if (value := _get(raw, "batchEvents")) is not None:
        batch = _option(
            "batchEvents",
            value,
            Batch,
            {
                "maxSize": ("max_size", "int"),
                "timeout": ("timeout", "duration"),
                "key": ("key", "str"),
                "if": ("if_exp", "str"),
            },
        )
    if (value := _get(raw, "priority")) is not None:
        parsed: Priority = _option("priority", value, Priority, {"run": ("run", "str")})
        priority = parsed if parsed.run is not None else None
    if (value := _get(raw, "singleton")) is not None:
        singleton = _option(
            "singleton",
            value,
            Singleton,
            {"mode": ("mode", "lower"), "key": ("key", "str")},
            # The reference server's zero value of the mode.
            mode="skip",
        )
    idempotency = _get(raw, "idempotency")
    if idempotency is not None and not isinstance(idempotency, str):
        raise _bad("idempotency", f"expected a CEL expression string, got {_show(idempotency)}")
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
    flow.check(has_cancel=has_cancel, wire=True)
    return flow


# -- the rest of a function ------------------------------------------------------------------


def _duration_ms(value: Any) -> int | None:
    if value in (None, ""):
        return None
    return int(parse_duration_ms(str(value)))


def _function(app_name: str, raw: Mapping[str, Any]) -> tuple[Function[Any], str]:
    full_id = _get(raw, "id")
    if not isinstance(full_id, str) or not full_id:
        raise FunctionConfigInvalidError("the function id is required")
    prefix = f"{app_name}-"
    local_id = full_id[len(prefix) :] if full_id.startswith(prefix) else full_id
    name = _get(raw, "name") or full_id
    steps = _get(raw, "steps")
    step = _get(steps, "step") if isinstance(steps, Mapping) else None
    step = step if isinstance(step, Mapping) else {}
    runtime = _get(step, "runtime")
    url = _get(runtime, "url") if isinstance(runtime, Mapping) else None
    if not isinstance(url, str) or not url:
        raise FunctionConfigInvalidError("steps.step.runtime.url is required")
    retries_obj = _get(step, "retries")
    retries = _get(retries_obj, "attempts") if isinstance(retries_obj, Mapping) else None
    if retries is None:
        retries = _get(raw, "retries")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise FunctionConfigInvalidError(f"retries must be a whole number, got {retries!r}")
        retries = min(retries, consts.MAX_RETRIES)
    cancel = [
        Cancel(
            event=str(_get(c, "event")),
            if_exp=_get(c, "if"),
            timeout=_duration_ms(_get(c, "timeout")),
        )
        for c in (_get(raw, "cancel") or [])
        if isinstance(c, Mapping)
    ]
    timeouts_raw = _get(raw, "timeouts")
    timeouts = None
    if isinstance(timeouts_raw, Mapping):
        start, finish = (
            _duration_ms(_get(timeouts_raw, "start")),
            _duration_ms(_get(timeouts_raw, "finish")),
        )
        timeouts = Timeouts(
            start=None if start is None else datetime.timedelta(milliseconds=start),
            finish=None if finish is None else datetime.timedelta(milliseconds=finish),
        )
    function: Function[Any] = Function(
        app_id=app_name,
        local_id=local_id,
        name=str(name),
        triggers=_triggers(_get(raw, "triggers")),
        retries=retries,
        handler=_remote_handler,
        cancel=cancel,
        timeouts=timeouts,
        flow=_flow(raw, has_cancel=bool(cancel)),
    )
    return function, url


def parse_registration(payload: Any) -> Registration:
    """Validate a register body; raises :class:`RegistrationError` listing what is wrong."""
    if not isinstance(payload, Mapping):
        raise RegistrationError("the register body must be a JSON object")
    app_name = _get(payload, "appName")
    if not isinstance(app_name, str) or not app_name:
        raise RegistrationError("App ID required")
    url = _get(payload, "url")
    if not isinstance(url, str) or not url:
        raise RegistrationError("the app url is required")
    raw_functions = _get(payload, "functions")
    if not isinstance(raw_functions, list) or not raw_functions:
        raise RegistrationError("No functions registered within your app")
    functions: list[Function[Any]] = []
    urls: dict[str, str] = {}
    errors: dict[str, str] = {}
    for index, raw in enumerate(raw_functions):
        where = str(_get(raw, "id") if isinstance(raw, Mapping) else f"functions[{index}]")
        try:
            if not isinstance(raw, Mapping):
                raise FunctionConfigInvalidError("a function must be an object")
            function, function_url = _function(app_name, raw)
        except (FunctionConfigInvalidError, DurationError, ValueError, TypeError) as exc:
            errors[where] = str(exc)
            continue
        if function.id in urls:
            errors[where] = "duplicate function id"
            continue
        functions.append(function)
        urls[function.id] = function_url
    if errors:
        raise RegistrationError("At least one function is invalid", errors)
    return Registration(
        app_name, url, str(_get(payload, "sdk") or ""), functions, urls, body=payload
    )
