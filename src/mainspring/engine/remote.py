"""Functions an app registers over HTTP (``POST /fn/register``, protocol §1.3).

A registered function becomes an ordinary :class:`~mainspring.sdk.function.Function` whose
handler is never called in this process: the engine calls its serve URL instead.

The whole body is checked against the shapes of §1.3, field by field, with the reference
server's JSON decoding (:mod:`~mainspring.engine.registration_schema`: keys matched
case-insensitively, the Python SDK sending ``appname`` and the TypeScript one ``appName``;
``null`` as absent; unknown keys ignored) and its rules (at most 10 distinct triggers,
CEL that compiles, cron that parses and fires, jitter from 1s to 5m, at most 5 cancel
conditions, and the flow-control rules of :mod:`~mainspring.engine.registration_flow`).

A body that is not right raises :class:`RegistrationError`, never another exception. Its
message names the JSON path of the first bad field
(``functions[0].steps.step.runtime.url: expected a string, got 5``); its ``errors`` map each
invalid function, by id (``functions[i]`` when it has no usable one), to its first problem
with the path inside the function (``{"app-f": "throttle.period: '0s' is out of range:
must be from 1s to 7d"}``).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from mainspring.engine.registration_flow import parse_flow
from mainspring.engine.registration_schema import (
    MAX_DEPTH,
    MAX_NAME_CHARS,
    Invalid,
    Node,
    array,
    at,
    check_depth,
    choice,
    duration_ms,
    expression,
    integer,
    join,
    obj,
    show,
    string,
    url,
)
from mainspring.protocol import consts
from mainspring.protocol.cron import CronError, parse_cron
from mainspring.sdk.config import Cancel, Timeouts
from mainspring.sdk.context import Context
from mainspring.sdk.function import Function
from mainspring.sdk.triggers import Trigger, TriggerCron, TriggerEvent

#: Most triggers and cancel conditions per function (protocol §1.3).
MAX_TRIGGERS = 10
MAX_CANCELS = 5
#: Cron jitter bounds, in milliseconds.
JITTER_MS = (1_000, 300_000)

_NO_FUNCTIONS = "No functions registered within your app"
_APP_SCHEMES = ("http", "https", "ws", "wss")
_HTTP_SCHEMES = ("http", "https")
#: Optional string labels of the body.
_LABELS = ("appVersion", "sdk", "v", "framework", "deployId", "idempotencyKey")
_CAPABILITIES = ("in_band_sync", "trust_probe", "connect")
# `*` is a trailing wildcard, allowed only right after `/` or `.` (protocol §10).
_WILDCARD = re.compile(r"[^*]*[/.]\*")
# An IANA zone name: letters, digits, `_+-`, in `/`-separated parts.
_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


class RegistrationError(ValueError):
    """A register request the server refuses.

    The message names the JSON path of the first bad field; ``errors`` maps each invalid
    function (by id, or ``functions[i]``) to its problem; ``path`` is the first bad field's
    path (empty when the body is not an object).
    """

    def __init__(
        self, message: str, errors: Mapping[str, str] | None = None, *, path: str = ""
    ) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})
        self.path = path


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


# -- the body ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _App:
    name: str
    url: str
    sdk: str


def _app(body: Node) -> _App:
    """The body's own fields (not ``functions``)."""
    where, raw = body.get("appName")
    if raw == "" or raw is None:
        raise Invalid(where, "App ID required")
    name = string(where, raw)
    where, raw = body.get("url")
    if raw is None:
        raise Invalid(where, "is required (the app's serve URL)")
    app_url = url(where, raw, _APP_SCHEMES)
    where, raw = body.get("deployType")
    if raw is not None:
        choice(where, raw, ("ping", "connect"))
    labels: dict[str, str] = {}
    for label in _LABELS:
        where, raw = body.get(label)
        if raw is not None:
            labels[label] = string(where, raw)
    where, raw = body.get("capabilities")
    if raw is not None:
        capabilities = obj(where, raw)
        for capability in _CAPABILITIES:
            where, raw = capabilities.get(capability)
            if raw is not None:
                string(where, raw)
    where, raw = body.get("featureObservations")
    if raw is not None:
        obj(where, raw)  # telemetry: its content is not read
    return _App(name, app_url, labels.get("sdk", ""))


def _functions(body: Node) -> tuple[str, list[Any]]:
    where, raw = body.get("functions")
    if raw is None:
        raise Invalid(where, _NO_FUNCTIONS)
    items = array(where, raw, what="an array of functions")
    if not items:
        raise Invalid(where, _NO_FUNCTIONS)
    return where, items


# -- triggers ----------------------------------------------------------------------------


def _cron(where: str, text: str) -> None:
    """``text`` parses as a 5-field cron (with an optional zone) and fires some day."""
    stripped = text.strip()
    if stripped.startswith(("TZ=", "CRON_TZ=")):
        zone = stripped.partition(" ")[0].split("=", 1)[1]
        if not _ZONE.fullmatch(zone):
            raise Invalid(where, f"invalid cron {text!r}: unknown time zone {zone!r}")
    try:
        schedule = parse_cron(text)
    except CronError as exc:
        raise Invalid(where, str(exc)) from None
    except (OSError, ValueError):  # a zone name that is a folder of the zone database
        raise Invalid(where, f"invalid cron {text!r}: unknown time zone") from None
    try:
        schedule.next_after(int(time.time() * 1000))
    except (ValueError, OverflowError):  # croniter finds no date (e.g. the 30th of February)
        raise Invalid(where, f"invalid cron {text!r}: it never fires") from None


def _trigger(node: Node) -> Trigger:
    event_at, event = node.get("event")
    cron_at, cron = node.get("cron")
    expression_at, condition = node.get("expression")
    jitter_at, jitter = node.get("jitter")
    if event is not None and cron is not None:
        raise Invalid(node.path, "has both an event and a cron: a trigger is one or the other")
    if event is not None:
        name = string(event_at, event, empty=False)
        if "*" in name and not _WILDCARD.fullmatch(name):
            raise Invalid(event_at, f"{show(name)}: '*' may only end the name, after '/' or '.'")
        if jitter is not None:
            string(jitter_at, jitter)  # a cron trigger's field: checked, not used
        text = None if condition is None else expression(expression_at, condition)
        return TriggerEvent(event=name, expression=text)
    if cron is not None:
        schedule = string(cron_at, cron, empty=False)
        _cron(cron_at, schedule)
        if condition is not None:
            string(expression_at, condition)  # an event trigger's field: checked, not used
        spread = None
        if jitter is not None:
            duration_ms(jitter_at, jitter, low=JITTER_MS[0], high=JITTER_MS[1])
            spread = str(jitter)
        return TriggerCron(cron=schedule, jitter=spread)
    raise Invalid(node.path, 'expected an "event" or a "cron" trigger, it has neither')


def _triggers(where: str, raw: Any) -> list[Trigger]:
    if raw is None:
        raise Invalid(where, "at least one trigger is required")
    items = array(where, raw, what="an array of triggers", most=MAX_TRIGGERS)
    if not items:
        raise Invalid(where, "at least one trigger is required")
    seen: dict[Trigger, str] = {}
    for index, item in enumerate(items):
        trigger = _trigger(obj(at(where, index), item))
        if trigger in seen:
            raise Invalid(at(where, index), f"duplicates {seen[trigger]}")
        seen[trigger] = at(where, index)
    return list(seen)


# -- steps, retries, cancel, timeouts, checkpoint ----------------------------------------


def _retries(where: str, raw: Any) -> int:
    """Retries (not attempts, protocol §1.3), capped as the reference server caps them."""
    return min(integer(where, raw, low=0), consts.MAX_RETRIES)


def _steps(where: str, raw: Any, app_url: str) -> tuple[str, int | None]:
    """The function's serve URL and its ``steps.step.retries.attempts``."""
    if raw is None:
        raise Invalid(where, 'is required: {"step": {"runtime": {"type": "http", "url": ...}}}')
    steps = obj(where, raw)
    # A map in the reference server (its keys are data, matched exactly), with one entry.
    if list(steps.raw) != ["step"]:
        got = show(list(steps.raw)) if steps.raw else "none"
        raise Invalid(where, f'expected exactly one entry, "step", got {got}')
    step = obj(join(where, "step"), steps.raw["step"])
    for label in ("id", "name"):
        label_at, value = step.get(label)
        if value is not None:
            string(label_at, value)
    runtime_at, runtime_raw = step.get("runtime")
    if runtime_raw is None:
        raise Invalid(runtime_at, 'is required: {"type": "http", "url": ...}')
    runtime = obj(runtime_at, runtime_raw)
    kind_at, kind = runtime.get("type")
    kind = "http" if kind is None else choice(kind_at, kind, ("http", "ws"))
    url_at, raw_url = runtime.get("url")
    if raw_url is not None:
        fn_url = url(url_at, raw_url, _HTTP_SCHEMES if kind == "http" else _APP_SCHEMES)
    elif kind == "http":
        raise Invalid(url_at, "is required (the function's serve URL)")
    else:  # a Connect function: it is reached through its app
        fn_url = app_url
    retries_at, retries_raw = step.get("retries")
    retries = None
    if retries_raw is not None:
        attempts_at, attempts = obj(retries_at, retries_raw).get("attempts")
        if attempts is not None:
            retries = _retries(attempts_at, attempts)
    return fn_url, retries


def _optional_ms(where: str, raw: Any) -> int | None:
    """A time string, ``""`` and ``null`` meaning none."""
    return None if raw is None or raw == "" else int(duration_ms(where, raw))


def _cancel(where: str, raw: Any) -> list[Cancel]:
    if raw is None:
        return []
    items = array(where, raw, what="an array of cancel conditions", most=MAX_CANCELS)
    cancel: list[Cancel] = []
    for index, item in enumerate(items):
        node = obj(at(where, index), item)
        event_at, event = node.get("event")
        if event is None:
            raise Invalid(event_at, "is required (the event that cancels the run)")
        name = string(event_at, event, empty=False)
        if_at, condition = node.get("if")
        text = None if condition is None else expression(if_at, condition)
        timeout = _optional_ms(*node.get("timeout"))
        cancel.append(Cancel(event=name, if_exp=text, timeout=timeout))
    return cancel


def _timeouts(where: str, raw: Any) -> Timeouts | None:
    if raw is None:
        return None
    node = obj(where, raw)
    start, finish = _optional_ms(*node.get("start")), _optional_ms(*node.get("finish"))
    return Timeouts(
        start=None if start is None else datetime.timedelta(milliseconds=start),
        finish=None if finish is None else datetime.timedelta(milliseconds=finish),
    )


def _checkpoint(where: str, raw: Any) -> None:
    """Checked only: checkpointing (protocol §13) is the SDK's business."""
    if raw is None:
        return
    node = obj(where, raw)
    steps_at, steps = node.get("batch_steps")
    if steps is not None:
        integer(steps_at, steps, low=1)
    for name in ("batch_interval", "max_runtime"):
        value_at, value = node.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            integer(value_at, value, low=0)  # milliseconds
        elif value is not None:
            duration_ms(value_at, value)


# -- a function --------------------------------------------------------------------------


def _function(app: _App, node: Node) -> tuple[Function[Any], str]:
    id_at, raw_id = node.get("id")
    if raw_id is None:
        raise Invalid(id_at, 'is required (the composite id, "{appName}-{fnId}")')
    full_id = string(id_at, raw_id, empty=False)
    prefix = f"{app.name}-"
    local_id = full_id[len(prefix) :] if full_id.startswith(prefix) else full_id
    name_at, raw_name = node.get("name")
    name = full_id if raw_name is None else string(name_at, raw_name) or full_id
    triggers = _triggers(*node.get("triggers"))
    fn_url, retries = _steps(*node.get("steps"), app.url)
    retries_at, fn_retries = node.get("retries")
    if fn_retries is not None:
        fn_retries = _retries(retries_at, fn_retries)
    cancel = _cancel(*node.get("cancel"))
    timeouts = _timeouts(*node.get("timeouts"))
    _checkpoint(*node.get("checkpoint"))
    flow = parse_flow(node, has_cancel=bool(cancel))
    function: Function[Any] = Function(
        app_id=app.name,
        local_id=local_id,
        name=name,
        triggers=triggers,
        # steps.step.retries wins; the function's own is the shorthand (protocol §1.3).
        retries=fn_retries if retries is None else retries,
        handler=_remote_handler,
        cancel=cancel,
        timeouts=timeouts,
        flow=flow,
    )
    return function, fn_url


def _error_key(raw: Any, index: int, errors: Mapping[str, str]) -> str:
    """A function's key in ``errors``: its id, or ``functions[i]`` without a usable one."""
    if isinstance(raw, Mapping):
        _, fn_id = Node("", raw).get("id")
        if isinstance(fn_id, str) and 0 < len(fn_id) <= MAX_NAME_CHARS and fn_id not in errors:
            return fn_id
    return f"functions[{index}]"


def _summary(first: str, keys: list[str]) -> str:
    """The message: the first problem, then which other functions are invalid."""
    others = keys[1:]
    if not others:
        return first
    listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    plural = "s" if len(others) > 1 else ""
    return f"{first} ({len(others)} more invalid function{plural}: {listed})"


def parse_registration(payload: Any) -> Registration:
    """Check a register body against protocol §1.3 and build its functions; raises
    :class:`RegistrationError` naming the path of the first bad field."""
    if not isinstance(payload, Mapping):
        raise RegistrationError(f"the register body must be a JSON object, got {show(payload)}")
    body = Node("", payload)
    try:
        app = _app(body)
        functions_at, raw_functions = _functions(body)
    except Invalid as exc:
        raise RegistrationError(str(exc), path=exc.path) from None
    functions: list[Function[Any]] = []
    urls: dict[str, str] = {}
    places: dict[str, str] = {}
    errors: dict[str, str] = {}
    first: Invalid | None = None
    first_at = ""
    for index, raw in enumerate(raw_functions):
        where = at(functions_at, index)
        key = _error_key(raw, index, errors)
        try:
            node = obj("", raw)
            function, function_url = _function(app, node)
            if function.id in urls:
                key = f"functions[{index}]"
                id_at = node.get("id")[0]
                raise Invalid(id_at, f"{show(function.id)} is the id of {places[function.id]} too")
        except Invalid as exc:
            errors[key] = str(exc)
            if first is None:
                first, first_at = exc, where
            continue
        functions.append(function)
        urls[function.id] = function_url
        places[function.id] = where
    if first is not None:
        path = join(first_at, first.path) if first.path else first_at
        message = _summary(f"{path}: {first.problem}", list(errors))
        raise RegistrationError(message, errors, path=path)
    _storable(payload)
    return Registration(app.name, app.url, app.sdk, functions, urls, body=payload)


def _storable(payload: Mapping[str, Any]) -> None:
    """The body, kept with the app, encodes as JSON (its unknown keys included)."""
    try:
        encoded: bytes | None = orjson.dumps(payload)
        problem = ""
    except orjson.JSONEncodeError as exc:  # too deep; or Python values JSON never gives
        encoded, problem = None, str(exc)
    # A body with no more brackets than levels allowed cannot nest too deep.
    if encoded is None or encoded.count(b"[") + encoded.count(b"{") > MAX_DEPTH:
        try:
            check_depth(payload)
        except Invalid as exc:
            raise RegistrationError(str(exc), path=exc.path) from None
    if encoded is None:
        raise RegistrationError(f"the register body cannot be stored as JSON: {problem}")
