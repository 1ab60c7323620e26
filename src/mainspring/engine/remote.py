"""Functions an app registers over HTTP (``POST /fn/register``, protocol §1.3).

A registered function becomes an ordinary :class:`~mainspring.sdk.function.Function` whose
handler is never called in this process: the engine calls its serve URL instead. Keys are
matched case-insensitively, as the reference server's JSON decoding does (the Python SDK
sends ``appname``, the TypeScript one ``appName``); unknown keys are ignored.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from mainspring.errors import FunctionConfigInvalidError
from mainspring.protocol import consts
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.sdk.config import Cancel, Timeouts
from mainspring.sdk.context import Context
from mainspring.sdk.function import Function
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
    step = (_get(raw, "steps") or {}).get("step") or {}
    runtime = _get(step, "runtime") or {}
    url = _get(runtime, "url")
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
        except (FunctionConfigInvalidError, DurationError, ValueError) as exc:
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
