"""Flow control at registration (protocol §1.3, §10).

- Our SDK sends the flow-control fields exactly as the official SDK (``inngest`` 0.5.19)
  does for the same options.
- The server parses every form of them from a register body into the function's
  ``FlowConfig``: what our SDK or the official one sends comes back equal.
- A malformed value is a 400 naming the function id and the field (the message names its
  whole JSON path, ``functions[1].throttle.period``), never a 500.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Callable
from typing import Any

import httpx
import inngest as official
import orjson
import pytest
from inngest._internal import transforms as official_transforms

import mainspring
from mainspring.engine.engine import Engine
from mainspring.engine.remote import RegistrationError, parse_registration
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
from mainspring.sdk.serve.asgi import serve
from mainspring.server.app import create_app

APP_URL = "http://app/api/inngest"
FLOW_KEYS = (
    "concurrency",
    "throttle",
    "rateLimit",
    "debounce",
    "batchEvents",
    "priority",
    "idempotency",
    "singleton",
)

#: The same ``create_function`` options, spelt with either SDK (``m`` is the module:
#: ``inngest`` or ``mainspring``, whose option classes share names and fields).
Options = Callable[[Any], dict[str, Any]]

SHARED_CASES: dict[str, Options] = {
    "concurrency limit only": lambda m: {"concurrency": [m.Concurrency(limit=5)]},
    "concurrency keys and scopes": lambda m: {
        "concurrency": [
            m.Concurrency(limit=2, key="event.data.user_id", scope="env"),
            m.Concurrency(limit=10, scope="fn"),
        ]
    },
    "concurrency account scope": lambda m: {
        "concurrency": [m.Concurrency(limit=1, key="event.data.account", scope="account")]
    },
    "throttle in ms with default burst": lambda m: {
        "throttle": m.Throttle(limit=10, period=60_000)
    },
    "throttle timedelta key burst": lambda m: {
        "throttle": m.Throttle(
            limit=1, period=datetime.timedelta(hours=2), key="event.data.customer", burst=5
        )
    },
    "throttle 90s": lambda m: {"throttle": m.Throttle(limit=3, period=90_000)},
    "throttle a week": lambda m: {
        "throttle": m.Throttle(limit=3, period=datetime.timedelta(days=7))
    },
    "rate limit a day with key": lambda m: {
        "rate_limit": m.RateLimit(
            limit=1, period=datetime.timedelta(hours=24), key="event.data.user"
        )
    },
    "rate limit seconds": lambda m: {"rate_limit": m.RateLimit(limit=100, period=1_000)},
    "debounce period only": lambda m: {"debounce": m.Debounce(period=5_000)},
    "debounce key and timeout": lambda m: {
        "debounce": m.Debounce(
            period=datetime.timedelta(seconds=30),
            key="event.data.doc",
            timeout=datetime.timedelta(minutes=10),
        )
    },
    "batch": lambda m: {
        "batch_events": m.Batch(max_size=100, timeout=datetime.timedelta(seconds=5))
    },
    "batch key and if": lambda m: {
        "batch_events": m.Batch(
            max_size=2, timeout=60_000, key="event.data.user", if_exp="event.data.ok == true"
        )
    },
    "priority": lambda m: {"priority": m.Priority(run="event.data.plan == 'enterprise' ? 180 : 0")},
    "idempotency": lambda m: {"idempotency": "event.data.order_id"},
    "singleton skip": lambda m: {"singleton": m.Singleton(mode="skip")},
    "singleton cancel with key": lambda m: {
        "singleton": m.Singleton(mode="cancel", key="event.data.user")
    },
    "everything but batching": lambda m: {
        "concurrency": [
            m.Concurrency(limit=4),
            m.Concurrency(limit=1, key="event.data.user", scope="env"),
        ],
        "throttle": m.Throttle(limit=20, period=datetime.timedelta(minutes=1), burst=2),
        "rate_limit": m.RateLimit(limit=5, period=3_600_000, key="event.data.ip"),
        "debounce": m.Debounce(period=10_000, timeout=datetime.timedelta(hours=1)),
        "priority": m.Priority(run="event.data.urgent ? 600 : 0"),
        "idempotency": "event.data.id",
        "singleton": m.Singleton(mode="skip", key="event.data.user"),
    },
    "batching with what goes with it": lambda m: {
        "batch_events": m.Batch(max_size=10, timeout=datetime.timedelta(seconds=30)),
        "concurrency": [m.Concurrency(limit=2)],
        "throttle": m.Throttle(limit=1, period=1_000),
        "rate_limit": m.RateLimit(limit=10, period=60_000),
        "idempotency": "event.data.id",
    },
}


def _official_function(options: dict[str, Any]) -> dict[str, Any]:
    """The function as the official SDK registers it (``serve`` strips ``None`` deeply)."""
    client = official.Inngest(app_id="app", is_production=False)

    @client.create_function(fn_id="f", trigger=official.TriggerEvent(event="app/go"), **options)
    async def fn(ctx: official.Context) -> None:
        return None

    raw = fn.get_config(APP_URL).main.to_dict()
    assert not isinstance(raw, Exception), raw
    stripped: dict[str, Any] = official_transforms.deep_strip_none(raw)
    return stripped


def _our_function(options: dict[str, Any]) -> mainspring.Function[Any]:
    client = mainspring.Client(app_id="app")

    @client.create_function(fn_id="f", trigger=mainspring.TriggerEvent(event="app/go"), **options)
    async def fn(ctx: mainspring.Context) -> None:
        return None

    made: mainspring.Function[Any] = fn  # **options forwarded: both overloads match
    return made


def _flow_fields(function: dict[str, Any]) -> dict[str, Any]:
    return {key: function[key] for key in FLOW_KEYS if key in function}


def _body(*functions: dict[str, Any]) -> dict[str, Any]:
    return {"appName": "app", "url": APP_URL, "functions": list(functions)}


def _parsed_flow(function: dict[str, Any]) -> FlowConfig:
    [parsed] = parse_registration(_body(function)).functions
    return parsed.config.flow


# -- the wire, against the official SDK -------------------------------------------------


@pytest.mark.parametrize("case", sorted(SHARED_CASES))
def test_flow_fields_are_sent_as_the_official_sdk_sends_them(case: str) -> None:
    theirs = _official_function(SHARED_CASES[case](official))
    ours = _our_function(SHARED_CASES[case](mainspring)).config.to_wire(APP_URL)
    assert _flow_fields(theirs), "the case sets no flow-control field"
    assert _flow_fields(ours) == _flow_fields(theirs)


@pytest.mark.parametrize("case", sorted(SHARED_CASES))
def test_the_official_sdk_registration_parses_into_our_flow_config(case: str) -> None:
    theirs = _official_function(SHARED_CASES[case](official))
    ours = _our_function(SHARED_CASES[case](mainspring))
    assert _parsed_flow(theirs) == ours.config.flow


# -- round trip: our SDK's wire, parsed by the server -----------------------------------

OUR_CASES: dict[str, dict[str, Any]] = {
    **{name: options(mainspring) for name, options in SHARED_CASES.items()},
    "run limit": {"concurrency": [RunConcurrency(limit=3)]},
    "run limit with key and step limits": {
        "concurrency": [
            Concurrency(limit=2),
            RunConcurrency(limit=1, key="event.data.user"),
            Concurrency(limit=5, key="event.data.org", scope="account"),
        ]
    },
    "time strings": {
        "throttle": Throttle(limit=2, period="1h30m"),
        "debounce": Debounce(period="2m", timeout="1d"),
    },
    "odd milliseconds": {
        "throttle": Throttle(limit=2, period=1_500),
        "rate_limit": RateLimit(limit=1, period=86_400_000),
    },
    "priority without run": {"priority": Priority()},
    "burst None": {"throttle": Throttle(limit=2, period="1m", burst=None)},  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(OUR_CASES))
def test_our_wire_parses_back_into_an_equal_flow_config(case: str) -> None:
    fn = _our_function(OUR_CASES[case])
    assert _parsed_flow(fn.config.to_wire(APP_URL)) == fn.config.flow


class _Hosts(httpx.AsyncBaseTransport):
    """Each request goes to the in-memory ASGI app of its host."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


def _server(tmp_path: pathlib.Path, http: httpx.AsyncClient | None = None) -> Engine:
    return Engine(
        mainspring.Client(app_id="server", is_production=False),
        [],
        database=tmp_path / "server.db",
        durability="normal",
        http=http,
    )


async def test_an_app_synced_over_http_keeps_its_flow_control(tmp_path: pathlib.Path) -> None:
    client = mainspring.Client(app_id="app", is_production=False, api_base_url="http://server")
    options = OUR_CASES["run limit with key and step limits"] | OUR_CASES["everything but batching"]
    options["concurrency"] = OUR_CASES["run limit with key and step limits"]["concurrency"]

    @client.create_function(fn_id="f", trigger=mainspring.TriggerEvent(event="app/go"), **options)
    async def fn(ctx: mainspring.Context) -> None:
        return None

    hosts = _Hosts()
    async with httpx.AsyncClient(transport=hosts) as http:
        hosts.apps["app"] = httpx.ASGITransport(app=serve(client, [fn], http=http))
        engine = _server(tmp_path, http)
        hosts.apps["server"] = httpx.ASGITransport(app=create_app(engine))
        async with engine:
            synced = await http.put(APP_URL, headers={"x-inngest-server-kind": "dev"})
            assert synced.status_code == 200, synced.text
            [registered] = engine.apps()["app"]
    assert registered.id == "app-f"
    assert registered.config.flow == fn.config.flow
    assert not registered.config.flow.empty


# -- every form the server reads --------------------------------------------------------


def _function(**fields: Any) -> dict[str, Any]:
    return {
        "id": "app-f",
        "name": "f",
        "triggers": [{"event": "app/go"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{APP_URL}?fnId=app-f&stepId=step"},
            }
        },
        **fields,
    }


PARSED: list[tuple[str, dict[str, Any], FlowConfig]] = [
    ("nothing", {}, FlowConfig()),
    (
        "nulls are absent",
        {key: None for key in FLOW_KEYS},
        FlowConfig(),
    ),
    (
        "concurrency as a number",
        {"concurrency": 5},
        FlowConfig(concurrency=(Concurrency(limit=5),)),
    ),
    (
        "concurrency as an object",
        {"concurrency": {"limit": 2, "key": "event.data.user", "scope": "env"}},
        FlowConfig(concurrency=(Concurrency(limit=2, key="event.data.user", scope="env"),)),
    ),
    (
        "concurrency as an array, scopes in any case",
        {
            "concurrency": [
                {"limit": 2, "scope": "FN"},
                {"Limit": 3, "KEY": "event.data.a", "Scope": "Account"},
            ]
        },
        FlowConfig(
            concurrency=(
                Concurrency(limit=2, scope="fn"),
                Concurrency(limit=3, key="event.data.a", scope="account"),
            )
        ),
    ),
    ("concurrency as an empty array", {"concurrency": []}, FlowConfig()),
    (
        "concurrency as fn and step",
        {
            "concurrency": {
                "fn": [{"limit": 1, "key": "event.data.user", "scope": "fn"}],
                "step": [{"limit": 4}, {"limit": 2, "key": "event.data.org", "scope": "env"}],
            }
        },
        FlowConfig(
            concurrency=(
                Concurrency(limit=4),
                Concurrency(limit=2, key="event.data.org", scope="env"),
            ),
            run_concurrency=RunConcurrency(limit=1, key="event.data.user"),
        ),
    ),
    (
        "concurrency as fn only, keys in any case",
        {"Concurrency": {"FN": [{"limit": 3}]}},
        FlowConfig(run_concurrency=RunConcurrency(limit=3)),
    ),
    (
        "concurrency as step only",
        {"concurrency": {"step": [{"limit": 3}], "fn": []}},
        FlowConfig(concurrency=(Concurrency(limit=3),)),
    ),
    (
        "throttle with default burst",
        {"throttle": {"limit": 10, "period": "1m"}},
        FlowConfig(throttle=Throttle(limit=10, period=60_000)),
    ),
    (
        "throttle with everything",
        {"THROTTLE": {"limit": 1, "period": "2h30m", "burst": 3, "key": "event.data.c"}},
        FlowConfig(throttle=Throttle(limit=1, period="150m", burst=3, key="event.data.c")),
    ),
    (
        "rate limit",
        {"rateLimit": {"limit": 1, "period": "24h", "key": "event.data.id"}},
        FlowConfig(rate_limit=RateLimit(limit=1, period="1d", key="event.data.id")),
    ),
    (
        "rate limit as the Python SDK spells it",
        {"ratelimit": {"limit": 5, "period": "1s"}},
        FlowConfig(rate_limit=RateLimit(limit=5, period=1_000)),
    ),
    (
        "debounce",
        {"debounce": {"period": "5s", "key": "event.data.doc", "timeout": "1m"}},
        FlowConfig(debounce=Debounce(period=5_000, key="event.data.doc", timeout=60_000)),
    ),
    (
        "batch",
        {"batchEvents": {"maxSize": 50, "timeout": "10s", "key": "event.data.u", "if": "true"}},
        FlowConfig(
            batch_events=Batch(max_size=50, timeout=10_000, key="event.data.u", if_exp="true")
        ),
    ),
    (
        "priority",
        {"priority": {"run": "event.data.p"}},
        FlowConfig(priority=Priority(run="event.data.p")),
    ),
    ("priority without run", {"priority": {}}, FlowConfig()),
    ("idempotency", {"idempotency": "event.data.id"}, FlowConfig(idempotency="event.data.id")),
    (
        "singleton, mode in any case",
        {"singleton": {"mode": "Cancel", "key": "event.data.user"}},
        FlowConfig(singleton=Singleton(mode="cancel", key="event.data.user")),
    ),
    (
        "singleton without mode skips",
        {"singleton": {"key": "event.data.user"}},
        FlowConfig(singleton=Singleton(mode="skip", key="event.data.user")),
    ),
    (
        "unknown keys are ignored",
        {"throttle": {"limit": 1, "period": "1s", "extra": 1}, "checkpoint": {"batch_steps": 5}},
        FlowConfig(throttle=Throttle(limit=1, period=1_000)),
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [pytest.param(fields, expected, id=name) for name, fields, expected in PARSED],
)
def test_registration_reads_every_form(fields: dict[str, Any], expected: FlowConfig) -> None:
    assert _parsed_flow(_function(**fields)) == expected


# -- malformed values -------------------------------------------------------------------

BATCH = {"maxSize": 2, "timeout": "1s"}

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # concurrency
    (
        "concurrency string",
        {"concurrency": "x"},
        'concurrency: expected an integer, an object or an array of limits, got "x"',
    ),
    ("concurrency bool", {"concurrency": True}, "concurrency: expected an integer, an object"),
    ("concurrency float", {"concurrency": 2.5}, "concurrency: expected an integer, an object"),
    ("concurrency 0", {"concurrency": 0}, "concurrency.limit: must be at least 1, got 0"),
    ("concurrency negative", {"concurrency": -3}, "concurrency.limit: must be at least 1, got -3"),
    (
        "concurrency object limit 0",
        {"concurrency": {"limit": 0}},
        "concurrency.limit: must be at least 1",
    ),
    (
        "concurrency object without limit",
        {"concurrency": {"key": "event.id"}},
        "concurrency.limit: is required",
    ),
    (
        "concurrency limit string",
        {"concurrency": [{"limit": "2"}]},
        'concurrency[0].limit: expected an integer, got "2"',
    ),
    (
        "concurrency item not an object",
        {"concurrency": [5]},
        "concurrency[0]: expected an object, got 5",
    ),
    (
        "three concurrency limits",
        {"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]},
        "concurrency: at most 2 step limits, got 3",
    ),
    (
        "env scope without key",
        {"concurrency": [{"limit": 1}, {"limit": 1, "scope": "env"}]},
        "concurrency[1].key: is required with the 'env' scope",
    ),
    (
        "unknown scope",
        {"concurrency": {"limit": 1, "key": "event.id", "scope": "app"}},
        "concurrency.scope: expected one of 'fn', 'env', 'account'",
    ),
    (
        "scope not a string",
        {"concurrency": {"limit": 1, "scope": 1}},
        "concurrency.scope: expected a string, got 1",
    ),
    (
        "bad concurrency key",
        {"concurrency": {"limit": 1, "key": "event.("}},
        "concurrency.key: invalid expression",
    ),
    (
        "fn not an array",
        {"concurrency": {"fn": 3}},
        "concurrency.fn: expected an array of at most one limit, got 3",
    ),
    (
        "two fn limits",
        {"concurrency": {"fn": [{"limit": 1}, {"limit": 2}]}},
        "concurrency.fn: at most one run limit, got 2",
    ),
    (
        "fn limit with env scope",
        {"concurrency": {"fn": [{"limit": 1, "key": "event.id", "scope": "env"}]}},
        "concurrency.fn[0].scope: a run limit has the 'fn' scope only",
    ),
    (
        "fn limit 0",
        {"concurrency": {"fn": [{"limit": 0}]}},
        "concurrency.fn[0].limit: must be at least 1",
    ),
    (
        "step not an array",
        {"concurrency": {"step": {"limit": 1}}},
        "concurrency.step: expected an array of limits",
    ),
    (
        "three step limits",
        {"concurrency": {"fn": [{"limit": 9}], "step": [{"limit": 1}] * 3}},
        "concurrency.step: at most 2 step limits, got 3",
    ),
    (
        "limit and fn",
        {"concurrency": {"limit": 1, "fn": [{"limit": 1}]}},
        "concurrency: has both a limit and fn/step limits",
    ),
    # throttle
    ("throttle number", {"throttle": 5}, "throttle: expected an object, got 5"),
    (
        "throttle limit string",
        {"throttle": {"limit": "a", "period": "1m"}},
        'throttle.limit: expected an integer, got "a"',
    ),
    (
        "throttle limit 0",
        {"throttle": {"limit": 0, "period": "1m"}},
        "throttle.limit: must be at least 1, got 0",
    ),
    ("throttle without period", {"throttle": {"limit": 1}}, "throttle.period: is required"),
    (
        "throttle period number",
        {"throttle": {"limit": 1, "period": 60}},
        "throttle.period: expected a time string such as '1m', got 60",
    ),
    (
        "throttle period 0s",
        {"throttle": {"limit": 1, "period": "0s"}},
        "throttle.period: '0s' is out of range: must be from 1s to 7d",
    ),
    (
        "throttle period 8d",
        {"throttle": {"limit": 1, "period": "8d"}},
        "throttle.period: '8d' is out of range",
    ),
    (
        "throttle period word",
        {"throttle": {"limit": 1, "period": "soon"}},
        "throttle.period: invalid duration 'soon'",
    ),
    (
        "throttle burst 0",
        {"throttle": {"limit": 1, "period": "1m", "burst": 0}},
        "throttle.burst: must be at least 1",
    ),
    (
        "throttle bad key",
        {"throttle": {"limit": 1, "period": "1m", "key": "("}},
        "throttle.key: invalid expression",
    ),
    # rate limit
    ("rate limit array", {"rateLimit": [1]}, "rateLimit: expected an object, got [1]"),
    (
        "rate limit 25h",
        {"rateLimit": {"limit": 1, "period": "25h"}},
        "rateLimit.period: '25h' is out of range: must be from 1s to 1d",
    ),
    (
        "rate limit -1",
        {"rateLimit": {"limit": -1, "period": "1h"}},
        "rateLimit.limit: must be at least 1",
    ),
    # debounce
    ("debounce without period", {"debounce": {"key": "event.id"}}, "debounce.period: is required"),
    (
        "debounce period 500ms",
        {"debounce": {"period": "500ms"}},
        "debounce.period: '500ms' is out of range",
    ),
    (
        "debounce timeout < period",
        {"debounce": {"period": "1m", "timeout": "30s"}},
        "debounce.timeout: 30s is shorter than the period 1m",
    ),
    # batch
    (
        "batch size 1",
        {"batchEvents": {"maxSize": 1, "timeout": "1s"}},
        "batchEvents.maxSize: must be from 2 to 10,000, got 1",
    ),
    (
        "batch size string",
        {"batchEvents": {"maxSize": "10", "timeout": "1s"}},
        'batchEvents.maxSize: expected an integer, got "10"',
    ),
    ("batch without timeout", {"batchEvents": {"maxSize": 10}}, "batchEvents.timeout: is required"),
    (
        "batch timeout 2m",
        {"batchEvents": {"maxSize": 10, "timeout": "2m"}},
        "batchEvents.timeout: '2m' is out of range: must be from 1s to 1m",
    ),
    (
        "batch bad if",
        {"batchEvents": {"maxSize": 10, "timeout": "1s", "if": "event.("}},
        "batchEvents.if: invalid expression",
    ),
    (
        "batch with priority",
        {"batchEvents": BATCH, "priority": {"run": "10"}},
        "batchEvents: cannot be combined with priority.run",
    ),
    (
        "batch with debounce",
        {"batchEvents": BATCH, "debounce": {"period": "1s"}},
        "batchEvents: cannot be combined with debounce",
    ),
    (
        "batch with singleton",
        {"batchEvents": BATCH, "singleton": {"mode": "skip"}},
        "batchEvents: cannot be combined with singleton",
    ),
    (
        "batch with cancel",
        {"batchEvents": BATCH, "cancel": [{"event": "app/stop"}]},
        "batchEvents: cannot be combined with cancel",
    ),
    # priority, idempotency, singleton
    (
        "priority string",
        {"priority": "event.data.p"},
        'priority: expected an object, got "event.data.p"',
    ),
    ("priority run number", {"priority": {"run": 5}}, "priority.run: expected a string, got 5"),
    ("priority bad run", {"priority": {"run": "event.("}}, "priority.run: invalid expression"),
    (
        "idempotency number",
        {"idempotency": 5},
        "idempotency: expected a CEL expression string, got 5",
    ),
    ("idempotency empty", {"idempotency": ""}, "idempotency: must be a non-empty CEL expression"),
    ("idempotency bad", {"idempotency": "event.("}, "idempotency: invalid expression"),
    (
        "singleton mode unknown",
        {"singleton": {"mode": "queue"}},
        "singleton.mode: expected one of 'skip', 'cancel'",
    ),
    (
        "singleton mode number",
        {"singleton": {"mode": 1}},
        "singleton.mode: expected a string, got 1",
    ),
    (
        "singleton bad key",
        {"singleton": {"mode": "skip", "key": "("}},
        "singleton.key: invalid expression",
    ),
]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [pytest.param(fields, problem, id=name) for name, fields, problem in REFUSED],
)
def test_malformed_values_fail_naming_the_function_and_field(
    fields: dict[str, Any], problem: str
) -> None:
    ok = _function() | {"id": "app-ok"}
    with pytest.raises(RegistrationError) as info:
        parse_registration(_body(ok, _function(**fields)))
    assert list(info.value.errors) == ["app-f"]
    # The message names the whole JSON path of the field.
    assert str(info.value) == f"functions[1].{info.value.errors['app-f']}"
    assert info.value.errors["app-f"].startswith(problem), info.value.errors["app-f"]


# -- through the server's HTTP API ------------------------------------------------------


async def test_the_server_answers_400_naming_the_function_and_field(
    tmp_path: pathlib.Path,
) -> None:
    engine = _server(tmp_path)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        for name, fields, problem in REFUSED:
            answer = await http.post(
                "/fn/register", content=orjson.dumps(_body(_function(**fields)))
            )
            assert answer.status_code == 400, (name, answer.text)
            body = answer.json()
            assert list(body["data"]) == ["app-f"], name
            assert body["error"] == f"functions[0].{body['data']['app-f']}", name
            assert body["data"]["app-f"].startswith(problem), (name, body["data"])
        # Several bad functions: each is named with its own problem; nothing is registered.
        answer = await http.post(
            "/fn/register",
            content=orjson.dumps(
                _body(
                    _function(throttle={"limit": "a"}),
                    _function(id="app-g", concurrency={"fn": 3}),
                    _function(id="app-ok"),
                )
            ),
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            'functions[0].throttle.limit: expected an integer, got "a" '
            "(1 more invalid function: app-g)"
        )
        assert answer.json()["data"] == {
            "app-f": 'throttle.limit: expected an integer, got "a"',
            "app-g": "concurrency.fn: expected an array of at most one limit, got 3",
        }
        assert "app" not in engine.apps()
        # A good body registers, flow control included.
        good = _function(
            concurrency={"fn": [{"limit": 1}], "step": [{"limit": 2}]},
            throttle={"limit": 5, "period": "1m"},
            checkpoint={"batch_steps": 10},
        )
        answer = await http.post("/fn/register", content=orjson.dumps(_body(good)))
        assert answer.status_code == 200, answer.text
        [registered] = engine.apps()["app"]
        assert registered.config.flow == FlowConfig(
            concurrency=(Concurrency(limit=2),),
            run_concurrency=RunConcurrency(limit=1),
            throttle=Throttle(limit=5, period=60_000),
        )


@pytest.mark.parametrize(
    "function",
    [
        _function(steps=[1]),
        _function(steps={"step": "x"}),
        _function(steps={"step": {"runtime": "x"}}),
        _function(concurrency={"fn": [None]}),
        _function(concurrency=[[1]]),
        _function(throttle={"limit": 1, "period": None}),
        _function(debounce={"period": {"ms": 1}}),
        _function(batchEvents={"maxSize": 2, "timeout": ["1s"]}),
    ],
)
async def test_odd_shapes_are_400s_not_500s(
    tmp_path: pathlib.Path, function: dict[str, Any]
) -> None:
    engine = _server(tmp_path)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        answer = await http.post("/fn/register", content=orjson.dumps(_body(function)))
    assert answer.status_code == 400, answer.text
    assert list(answer.json()["data"]) == ["app-f"]
