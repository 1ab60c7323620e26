"""The whole register body is checked against protocol §1.3 (hardening, part 3).

- Every field, top level and per function, of a wrong type, out of range or too long is a
  ``RegistrationError`` whose message names the JSON path of the first bad field
  (``functions[0].steps.step.runtime.url: expected a string, got 5``); through the server it
  is a 400 ``{"error": <that message>, "data": {<function>: <problem>}, "status": 400}``.
- Keys match as the reference server's Go decoder matches them (any ASCII case, the Kelvin
  sign and the long s, the last of several winning, ``null`` as absent); unknown keys are
  ignored.
- Property: a valid body mutated anywhere (another JSON type, huge numbers, deep nesting,
  long strings, keys removed, recased or added) either parses or raises
  ``RegistrationError``, and the server never answers 5xx. ``MAINSPRING_FUZZ_EXAMPLES`` sets
  how many bodies are tried (300 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mainspring
from mainspring.engine.engine import Engine
from mainspring.engine.remote import Registration, RegistrationError, parse_registration
from mainspring.sdk.flow import Concurrency, RunConcurrency, Throttle
from mainspring.server.app import create_app

APP_URL = "http://app.test/api/inngest"
FUZZ_EXAMPLES = int(os.environ.get("MAINSPRING_FUZZ_EXAMPLES", "300"))
KELVIN, LONG_S = "\u212a", "\u017f"

#: A register body using every field of protocol §1.3, as an SDK sends it.
VALID = """{
  "url": "http://app.test/api/inngest", "deployType": "ping", "appName": "app",
  "appVersion": "1.2.3", "sdk": "js:v3.40.0", "v": "0.1", "framework": "express",
  "capabilities": {"trust_probe": "v1", "connect": "v1", "in_band_sync": "v1"},
  "deployId": "deploy-1", "featureObservations": {"checkpointing": true, "count": 3},
  "idempotencyKey": "sync-1",
  "functions": [
    {"id": "app-orders", "name": "Orders",
     "triggers": [{"event": "shop/order.*", "expression": "event.data.total > 10"},
                  {"cron": "TZ=Europe/Paris 0 3 * * 1", "jitter": "30s"}],
     "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 3},
       "runtime": {"type": "http",
                   "url": "http://app.test/api/inngest?fnId=app-orders&stepId=step"}}},
     "retries": 2,
     "cancel": [{"event": "shop/order.cancelled", "if": "event.data.id == async.data.id",
                 "timeout": "1h"}],
     "timeouts": {"start": "10s", "finish": "5m"},
     "concurrency": {"fn": [{"limit": 2, "key": "event.data.user"}],
                     "step": [{"limit": 5}, {"limit": 1, "key": "event.data.org", "scope": "env"}]},
     "throttle": {"limit": 10, "period": "1m", "burst": 2, "key": "event.data.user"},
     "rateLimit": {"limit": 100, "period": "1h"},
     "debounce": {"period": "5s", "timeout": "1m", "key": "event.data.user"},
     "priority": {"run": "event.data.vip ? 60 : 0"},
     "idempotency": "event.data.id",
     "singleton": {"mode": "skip", "key": "event.data.user"},
     "checkpoint": {"batch_steps": 10, "batch_interval": "1s", "max_runtime": "30s"}},
    {"id": "app-digest", "name": "Digest", "triggers": [{"event": "mail/queued"}],
     "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http",
       "url": "http://app.test/api/inngest?fnId=app-digest&stepId=step"}}},
     "concurrency": 4,
     "batchEvents": {"maxSize": 50, "timeout": "10s", "key": "event.data.user",
                     "if": "event.data.batch == true"}},
    {"id": "app-orders-failure", "name": "Orders (failure)",
     "triggers": [{"event": "inngest/function.failed",
                   "expression": "event.data.function_id == 'app-orders'"}],
     "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 0},
       "runtime": {"type": "http",
                   "url": "http://app.test/api/inngest?fnId=app-orders-failure&stepId=step"}}},
     "concurrency": [{"limit": 1}]}
  ]
}"""


def valid_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(VALID)
    return body


DELETE = object()
Path = tuple[str | int, ...]


def changed(path: str, value: Any) -> dict[str, Any]:
    """The valid body with the node at the dotted ``path`` (``functions.0.steps``) set to
    ``value``, or removed for ``DELETE``."""
    body = valid_body()
    *parents, last = (int(part) if part.isdigit() else part for part in path.split("."))
    node: Any = body
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return body


def renamed(**fields: Any) -> dict[str, Any]:
    """The valid body with ``appName`` spelt otherwise: ``fields`` in its place."""
    return changed("appName", DELETE) | fields


def _server(tmp_path: pathlib.Path) -> Engine:
    # Apps are never called: a cron that comes due gets a 404 at once.
    calls = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(404)))
    return Engine(
        mainspring.Client(app_id="server", is_production=False),
        [],
        database=tmp_path / "server.db",
        durability="normal",
        http=calls,
    )


def _api(engine: Engine) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(engine))
    return httpx.AsyncClient(transport=transport, base_url="http://server")


# -- what is accepted --------------------------------------------------------------------


def _configs(registration: Registration) -> dict[str, Any]:
    return {fn.id: fn.config for fn in registration.functions}


def test_a_body_with_every_field_parses() -> None:
    registration = parse_registration(valid_body())
    assert (registration.app_name, registration.url) == ("app", APP_URL)
    assert registration.sdk == "js:v3.40.0"
    orders = _configs(registration)["app-orders"]
    assert orders.retries == 3  # steps.step.retries wins over the function's shorthand
    assert [t.to_wire() for t in orders.triggers] == valid_body()["functions"][0]["triggers"]
    assert [c.to_wire() for c in orders.cancel] == valid_body()["functions"][0]["cancel"]
    assert (orders.timeout_ms("start"), orders.timeout_ms("finish")) == (10_000, 300_000)
    assert orders.flow.run_concurrency == RunConcurrency(limit=2, key="event.data.user")
    assert orders.flow.throttle == Throttle(limit=10, period="1m", burst=2, key="event.data.user")
    assert _configs(registration)["app-digest"].flow.concurrency == (Concurrency(limit=4),)
    assert _configs(registration)["app-orders-failure"].retries == 0
    assert registration.urls["app-digest"] == f"{APP_URL}?fnId=app-digest&stepId=step"


def _long_s_steps() -> dict[str, Any]:
    body = valid_body()
    digest = body["functions"][1]
    digest[f"{LONG_S}teps"] = digest.pop("steps")
    return body


def _app(r: Registration) -> Any:
    return r.app_name


def _retries(r: Registration) -> Any:
    return r.functions[0].config.retries


def _throttle(r: Registration) -> Any:
    return r.functions[0].config.flow.throttle


def _digest(r: Registration) -> Any:
    return r.urls["app-digest"]


DIGEST_URL = f"{APP_URL}?fnId=app-digest&stepId=step"
THROTTLE = {"limit": 1, "period": "1s"}

ACCEPTED: list[tuple[str, dict[str, Any], Callable[[Registration], Any], Any]] = [
    ("appname (the Python SDK)", renamed(appname="py"), _app, "py"),
    ("APPNAME", renamed(APPNAME="up"), _app, "up"),
    ("the last spelling wins, as in Go", renamed(appName="a", APPname="b"), _app, "b"),
    ("null is absent", renamed(appName="kept", APPNAME=None), _app, "kept"),
    (
        "the Kelvin sign is a k, as in Go",
        changed("functions.0.throttle", THROTTLE | {f"{KELVIN}ey": "event.id"}),
        _throttle,
        Throttle(limit=1, period="1s", key="event.id"),
    ),
    ("the long s is an s, as in Go", _long_s_steps(), _digest, DIGEST_URL),
    (
        "a ligature is no two letters (unlike casefold): an unknown key",
        changed("functions.0.throttle", THROTTLE | {"bur\ufb06": 5}),
        _throttle,
        Throttle(limit=1, period="1s", burst=1),
    ),
    ("retries capped", changed("functions.0.steps.step.retries.attempts", 2**63 - 1), _retries, 20),
    ("function-level retries", changed("functions.0.steps.step.retries", DELETE), _retries, 2),
    ("ws without url", changed("functions.1.steps.step.runtime", {"type": "ws"}), _digest, APP_URL),
    (
        "a missing name is the id",
        changed("functions.1.name", DELETE),
        lambda r: r.functions[1].name,
        "app-digest",
    ),
    (
        "checkpoint durations as milliseconds",
        changed("functions.0.checkpoint", {"batch_interval": 1000, "max_runtime": 0}),
        lambda r: len(r.functions),
        3,
    ),
    (
        "empty timeouts are none",
        changed("functions.0.timeouts", {"start": "", "finish": None}),
        lambda r: r.functions[0].config.timeout_ms("start"),
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "read", "expected"),
    [pytest.param(body, read, expected, id=name) for name, body, read, expected in ACCEPTED],
)
def test_accepted_forms(
    body: dict[str, Any], read: Callable[[Registration], Any], expected: Any
) -> None:
    assert read(parse_registration(body)) == expected


def _rekeyed(value: Any, key_for: Callable[[str], str], under_steps: bool = False) -> Any:
    """``value`` with every key replaced by ``key_for(key)`` but the ``steps`` map's."""
    if isinstance(value, dict):
        return {
            (key if under_steps else key_for(key)): _rekeyed(item, key_for, key == "steps")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rekeyed(item, key_for) for item in value]
    return value


def test_keys_match_in_any_case_as_go_does() -> None:
    """Every key recased, ``k`` and ``s`` spelt with the Kelvin sign and the long s, reads
    the same functions; ``steps`` is a map whose key ``step`` is data, matched exactly."""
    plain = parse_registration(valid_body())
    shouted = parse_registration(
        _rekeyed(valid_body(), lambda key: key.upper().replace("K", KELVIN).replace("S", LONG_S))
    )
    assert _configs(shouted) == _configs(plain)
    assert shouted.urls == plain.urls


def test_unknown_keys_are_ignored_at_every_level() -> None:
    def extend(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: extend(item) for key, item in value.items()} | {"x-new": [{"a": None}]}
        return [extend(item) for item in value] if isinstance(value, list) else value

    body = extend(valid_body())
    for function in body["functions"]:
        del function["steps"]["x-new"]  # the steps map has one entry
    assert _configs(parse_registration(body)) == _configs(parse_registration(valid_body()))


# -- what is refused ---------------------------------------------------------------------

_ID_TOO_LONG = "is 256 characters long, at most 255 are allowed"
_NOT_HTTP = "is not an absolute http:// or https:// URL"
_ANY_URL = "is not an absolute http://, https://, ws:// or wss:// URL"
_DEEP = "a" + ".b" * 20_000  # compiling it would overflow the CEL bindings' stack
_TOO_DEEP = "is 40,001 characters long, at most 4,096 are allowed"
_TIME = "expected a time string such as '1m', got"
_INT64 = "must be at most 9,223,372,036,854,775,807, got"
F0, F1 = "functions.0", "functions.1"
T0, T1 = f"{F0}.triggers.0", f"{F0}.triggers.1"
STEP, C0 = f"{F0}.steps.step", f"{F0}.cancel.0"

#: (the node changed, its new value, the problem): the message names the node's path.
REFUSED_FIELDS: list[tuple[str, Any, str]] = [
    ("appName", DELETE, "App ID required"),
    ("appName", "", "App ID required"),
    ("appName", 5, "expected a string, got 5"),
    ("appName", "a" * 256, _ID_TOO_LONG),
    ("url", DELETE, "is required (the app's serve URL)"),
    ("url", 5, "expected a string, got 5"),
    ("url", "/api/inngest", f'"/api/inngest" {_ANY_URL}'),
    ("url", "http://[::1/x", '"http://[::1/x" is not a URL: Invalid IPv6 URL'),
    ("url", "http://a:99999/", '"http://a:99999/" is not a URL'),
    ("url", "http://a b/", '"http://a b/" is not a URL: it has spaces or control characters'),
    ("url", "http://a/" + "x" * 2040, "is 2,049 characters long, at most 2,048 are allowed"),
    ("deployType", "pong", 'expected one of "ping", "connect", got "pong"'),
    ("appVersion", 1, "expected a string, got 1"),
    ("sdk", ["js"], 'expected a string, got ["js"]'),
    ("v", 0.1, "expected a string, got 0.1"),
    ("framework", {}, "expected a string, got {}"),
    ("capabilities", "all", 'expected an object, got "all"'),
    ("capabilities.trust_probe", 1, "expected a string, got 1"),
    ("deployId", 5, "expected a string, got 5"),
    ("featureObservations", [], "expected an object, got []"),
    ("idempotencyKey", True, "expected a string, got true"),
    ("functions", DELETE, "No functions registered within your app"),
    ("functions", [], "No functions registered within your app"),
    ("functions", {}, "expected an array of functions, got {}"),
    # a function, its id and name
    (F0, 5, "expected an object, got 5"),
    (f"{F0}.id", DELETE, 'is required (the composite id, "{appName}-{fnId}")'),
    (f"{F0}.id", 5, "expected a string, got 5"),
    (f"{F0}.id", "", "must not be empty"),
    (f"{F0}.id", "i" * 256, _ID_TOO_LONG),
    (f"{F1}.id", "app-orders", '"app-orders" is the id of functions[0] too'),
    (f"{F0}.name", 5, "expected a string, got 5"),
    (f"{F0}.name", "n" * 256, _ID_TOO_LONG),
    # triggers
    (f"{F0}.triggers", DELETE, "at least one trigger is required"),
    (f"{F0}.triggers", [], "at least one trigger is required"),
    (f"{F0}.triggers", "x", 'expected an array of triggers, got "x"'),
    (f"{F0}.triggers", [{"event": f"e/{n}"} for n in range(11)], "has 11 items, at most 10"),
    (T0, 5, "expected an object, got 5"),
    (T0, {}, 'expected an "event" or a "cron" trigger, it has neither'),
    (T0, {"event": "a", "cron": "* * * * *"}, "has both an event and a cron"),
    (f"{T0}.event", 5, "expected a string, got 5"),
    (f"{T0}.event", "", "must not be empty"),
    (f"{T0}.event", "e" * 256, _ID_TOO_LONG),
    (f"{T0}.event", "shop/*.x", "\"shop/*.x\": '*' may only end the name, after '/' or '.'"),
    (f"{T0}.expression", 5, "expected a string, got 5"),
    (f"{T0}.expression", "event.(", "invalid expression: "),
    (f"{T0}.expression", "  ", "must be a non-empty CEL expression"),
    (f"{T0}.expression", _DEEP, _TOO_DEEP),
    (f"{T1}.cron", 5, "expected a string, got 5"),
    (f"{T1}.cron", "@daily", "invalid cron '@daily': expected 5 fields"),
    (f"{T1}.cron", "0 0 30 2 *", "invalid cron '0 0 30 2 *': it never fires"),
    (f"{T1}.cron", "TZ=America * * * * *", "invalid cron 'TZ=America * * * * *': unknown"),
    (f"{T1}.cron", "TZ=../../etc/passwd * * * * *", "invalid cron 'TZ=../../etc/passwd"),
    (f"{T1}.cron", "TZ=" + "a" * 250 + " * * * * *", "is 263 characters long"),
    (f"{T1}.jitter", "500ms", "'500ms' is out of range: must be from 1s to 5m"),
    (f"{T1}.jitter", "6m", "'6m' is out of range: must be from 1s to 5m"),
    (f"{T1}.jitter", 30, f"{_TIME} 30"),
    # steps (the examples first)
    (f"{F0}.steps", "x", 'expected an object, got "x"'),
    (f"{F0}.steps", [1], "expected an object, got [1]"),
    (f"{STEP}.runtime", 5, "expected an object, got 5"),
    (f"{F0}.steps", DELETE, "is required"),
    (f"{F0}.steps", {}, 'expected exactly one entry, "step", got none'),
    (f"{F0}.steps", {"Step": {}}, 'expected exactly one entry, "step", got ["Step"]'),
    (STEP, "x", 'expected an object, got "x"'),
    (f"{STEP}.id", 1, "expected a string, got 1"),
    (f"{STEP}.runtime", DELETE, "is required"),
    (f"{STEP}.runtime.type", "grpc", 'expected one of "http", "ws", got "grpc"'),
    (f"{STEP}.runtime.url", 5, "expected a string, got 5"),
    (f"{STEP}.runtime.url", DELETE, "is required (the function's serve URL)"),
    (f"{STEP}.runtime.url", "ws://app/x", f'"ws://app/x" {_NOT_HTTP}'),
    (f"{STEP}.retries", 3, "expected an object, got 3"),
    (f"{STEP}.retries.attempts", -1, "must be at least 0, got -1"),
    (f"{STEP}.retries.attempts", True, "expected an integer, got true"),
    (f"{STEP}.retries.attempts", 1.5, "expected an integer, got 1.5"),
    (f"{STEP}.retries.attempts", 1e308, "expected an integer, got 1e+308"),
    (f"{STEP}.retries.attempts", 2**63, f"{_INT64} 9223372036854775808"),
    # retries, cancel, timeouts, checkpoint
    (f"{F0}.retries", "3", 'expected an integer, got "3"'),
    (f"{F0}.retries", 2**64, _INT64),
    (f"{F0}.cancel", "x", 'expected an array of cancel conditions, got "x"'),
    (f"{F0}.cancel", [{"event": f"c/{n}"} for n in range(6)], "has 6 items, at most 5 are"),
    (f"{C0}.event", DELETE, "is required (the event that cancels the run)"),
    (f"{C0}.event", 1, "expected a string, got 1"),
    (f"{C0}.if", "async.(", "invalid expression"),
    (f"{C0}.timeout", 60, f"{_TIME} 60"),
    (f"{C0}.timeout", "999999d", "'999999d' is out of range: must be from 0ms to 106751d"),
    (f"{C0}.timeout", "9" * 250 + "s", "'" + "9" * 250 + "s' is out of range"),
    (f"{F0}.timeouts", "1m", 'expected an object, got "1m"'),
    (f"{F0}.timeouts.start", 10, f"{_TIME} 10"),
    (f"{F0}.timeouts.finish", "soon", "invalid duration 'soon'"),
    (f"{F0}.checkpoint", 5, "expected an object, got 5"),
    (f"{F0}.checkpoint.batch_steps", 0, "must be at least 1, got 0"),
    (f"{F0}.checkpoint.max_runtime", False, f"{_TIME} false"),
    (f"{F0}.checkpoint.batch_interval", -1, "must be at least 0, got -1"),
    # flow control: what the option classes never see
    (f"{F1}.concurrency", 2**64, _INT64),
    (f"{F0}.throttle.limit", 2**63, _INT64),
    (f"{F0}.throttle.period", "9" * 300 + "s", "is 301 characters long"),
    (f"{F0}.throttle.period", "9" * 200 + "s", "'" + "9" * 200 + "s' is out of range"),
    (f"{F0}.rateLimit.key", _DEEP, _TOO_DEEP),
    (f"{F0}.idempotency", _DEEP, _TOO_DEEP),
    (f"{F0}.concurrency.step", [{"limit": 1}] * 1000, "at most 2 step limits, got 1000"),
]

#: Problems named elsewhere than where the body was changed: (name, body, message).
REFUSED_BODIES: list[tuple[str, Any, str]] = [
    ("body not an object", [1], "the register body must be a JSON object, got [1]"),
    ("appname named as sent", renamed(appname=True), "appname: expected a string, got true"),
    (
        "duplicate triggers",
        changed(f"{F0}.triggers", [{"event": "a/b"}, {"event": "a/b", "expression": None}]),
        "functions[0].triggers[1]: duplicates triggers[0]",
    ),
    (
        "two steps",
        changed(f"{F0}.steps.other", {}),
        'functions[0].steps: expected exactly one entry, "step", got ["step", "other"]',
    ),
    (
        "nesting past what can be stored",
        changed("featureObservations.deep", json.loads("[" * 150 + "]" * 150)),
        "featureObservations.deep" + "[0]" * 98 + ": nests deeper than 100 levels",
    ),
]


def _json_path(dotted: str) -> str:
    return re.sub(r"[.](\d+)", r"[\1]", dotted)


REFUSED: list[tuple[str, Any, str]] = [
    (f"{path}: {problem}", changed(path, value), f"{_json_path(path)}: {problem}")
    for path, value, problem in REFUSED_FIELDS
] + REFUSED_BODIES


def _refused(body: Any) -> RegistrationError:
    with pytest.raises(RegistrationError) as info:
        parse_registration(body)
    return info.value


@pytest.mark.parametrize(
    ("body", "message"),
    [pytest.param(body, message, id=name) for name, body, message in REFUSED],
)
def test_every_field_is_checked_naming_its_path(body: Any, message: str) -> None:
    error = _refused(body)
    assert str(error).startswith(message), str(error)
    assert str(error).startswith(f"{error.path}: " if error.path else "the register body")
    if error.path.startswith("functions["):
        # One function is wrong: it is the one entry of errors, path inside the function.
        [(key, problem)] = error.errors.items()
        index = int(error.path[len("functions[") : error.path.index("]")])
        function = body["functions"][index]
        fn_id = function.get("id") if isinstance(function, dict) else None
        assert key in (fn_id, f"functions[{index}]")
        assert str(error).endswith(problem)
    else:
        assert error.errors == {}


def test_the_first_error_is_named_and_every_function_listed() -> None:
    body = valid_body()
    body["functions"][0]["steps"]["step"]["runtime"]["url"] = 5
    body["functions"][1]["throttle"] = {"limit": "a"}
    body["functions"][2] = 7
    error = _refused(body)
    assert str(error) == (
        "functions[0].steps.step.runtime.url: expected a string, got 5 "
        "(2 more invalid functions: app-digest, functions[2])"
    )
    assert error.path == "functions[0].steps.step.runtime.url"
    assert error.errors == {
        "app-orders": "steps.step.runtime.url: expected a string, got 5",
        "app-digest": 'throttle.limit: expected an integer, got "a"',
        "functions[2]": "expected an object, got 7",
    }


async def test_the_server_answers_400_naming_the_path(tmp_path: pathlib.Path) -> None:
    engine = _server(tmp_path)
    async with engine, _api(engine) as http:
        for name, body, _ in REFUSED:
            wire = json.dumps(body)
            answer = await http.post("/fn/register", content=wire)
            assert answer.status_code == 400, (name, answer.text)
            if "data" not in answer.json():  # refused by the server's own limits, unparsed
                assert name == "nesting past what can be stored", answer.text
                continue
            # What the server reads (orjson makes integers past 64 bits floats).
            error = _refused(orjson.loads(wire))
            assert answer.json() == {"error": str(error), "data": error.errors, "status": 400}
            assert error.path == _refused(body).path, name
        assert "app" not in engine.apps()
        answer = await http.post("/fn/register", content=json.dumps(valid_body()))
        assert answer.status_code == 200, answer.text
        names = sorted(fn.id for fn in engine.apps()["app"])
        assert names == ["app-digest", "app-orders", "app-orders-failure"]


# -- property: mutated bodies ------------------------------------------------------------


def _nested(depth: int, as_object: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if as_object else [value]
    return value


_ODD_NUMBERS: list[int | float] = [0, -1, 1, 2, 20, 21, 2**31, 2**53 + 1, 2**63 - 1, 2**63]
_ODD_NUMBERS += [2**64, -(2**63) - 1, 10**400, 1e308, -1e308, 0.5, 1.0, -0.0]
_ODD_NUMBERS += [float("inf"), float("nan")]
_ODD_STRINGS = ["", " ", "x", "step", "http", "ws", "ping", "connect", "skip", "ENV", "app/*"]
_ODD_STRINGS += ["1s", "0s", "6m", "8d", "1e5", "9" * 400 + "s", "a" * 256, "a" * 5000, "a*b"]
_ODD_STRINGS += ["event.(", "event.data.x == 1", "a" + ".b" * 20_000, "(" * 3000 + ")" * 3000]
_ODD_STRINGS += ["* * * * *", "0 0 30 2 *", "TZ=America * * * * *", "@daily", "http://"]
_ODD_STRINGS += ["TZ=" + "a" * 300 + " * * * * *", "http://[::1", "http://a:99999", "ftp://a/x"]
_ODD_STRINGS += ["\x00", "\udc80", KELVIN]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_replacement = st.one_of(
    st.sampled_from(_ODD_NUMBERS),
    st.sampled_from(_ODD_STRINGS),
    st.builds(_nested, st.integers(1, 3000), st.booleans()),
    st.builds(list),  # fresh ones: a mutation may grow them
    st.builds(dict),
    _json,
)


def _paths(body: Any) -> list[Path]:
    """The path of every node of ``body`` (the root included), however deep."""
    found: list[Path] = []
    todo: list[tuple[Path, Any]] = [((), body)]
    while todo:
        path, value = todo.pop()
        found.append(path)
        if isinstance(value, dict):
            todo.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            todo.extend(((*path, index), item) for index, item in enumerate(value))
    return found


def _mutate(body: Any, data: st.DataObject) -> Any:
    path = data.draw(st.sampled_from(_paths(body)), label="path")
    op = data.draw(st.sampled_from(["replace", "replace", "remove", "recase", "grow"]), label="op")
    if not path:
        return data.draw(_replacement) if op == "replace" else body
    parent: Any = body
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "remove":
        del parent[last]
    elif op == "recase" and isinstance(last, str):
        spelling = data.draw(st.sampled_from([last.upper(), last.lower(), last.title()]))
        parent[spelling] = parent.pop(last)
    elif op == "grow" and isinstance(parent[last], list | dict):
        node, count = parent[last], data.draw(st.integers(1, 20))
        if isinstance(node, list):
            node.extend(node[:1] * count if node else [None] * count)
        else:
            node.update({f"k{n}": data.draw(_replacement) for n in range(count)})
    else:
        parent[last] = data.draw(_replacement, label="value")
    return body


class _Piece(str):
    """A piece of JSON text already written."""


def _dumps(value: Any) -> bytes:
    """JSON text of any value, however deep (no recursion), with what JSON cannot say as
    Python's json writes it (NaN, Infinity, escaped lone surrogates): the server must
    answer 400 to those."""
    out: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, _Piece):
            out.append(item)
        elif isinstance(item, dict):
            pieces: list[Any] = [_Piece("{")]
            for position, (key, sub) in enumerate(item.items()):
                pieces += [_Piece(("," if position else "") + json.dumps(key) + ":"), sub]
            todo.extend(reversed([*pieces, _Piece("}")]))
        elif isinstance(item, list):
            pieces = [_Piece("[")]
            for position, sub in enumerate(item):
                pieces += [_Piece(","), sub] if position else [sub]
            todo.extend(reversed([*pieces, _Piece("]")]))
        else:
            out.append(json.dumps(item))
    return "".join(out).encode()


def _outcome(body: Any) -> RegistrationError | None:
    try:
        parse_registration(body)
    except RegistrationError as error:
        return error
    return None


def test_mutated_bodies_parse_or_are_refused_and_never_5xx(tmp_path: pathlib.Path) -> None:
    loop = asyncio.new_event_loop()
    engine = _server(tmp_path)
    http = _api(engine)
    loop.run_until_complete(engine.start())

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        body: Any = valid_body()
        for _ in range(data.draw(st.integers(1, 4), label="mutations")):
            body = _mutate(body, data)
        # Straight in, as Python values (big ints, NaN, lone surrogates included).
        with contextlib.suppress(RegistrationError):
            parse_registration(body)
        # Through the server, as JSON text.
        wire = _dumps(body)
        answer = loop.run_until_complete(http.post("/fn/register", content=wire))
        assert answer.status_code < 500, answer.text
        payload = answer.json()
        try:
            decoded = orjson.loads(wire)
        except orjson.JSONDecodeError:
            assert answer.status_code == 400, answer.text
            return
        error = _outcome(decoded)
        if error is None:
            problem = payload.get("error", "")
            assert answer.status_code == 200 or "belongs to another app" in problem, answer.text
        else:
            assert answer.status_code == 400, answer.text
            if "data" in payload:  # else refused by the server's own limits, unparsed
                assert payload == {"error": str(error), "data": error.errors, "status": 400}

    try:
        check()
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(engine.stop())
        loop.close()
