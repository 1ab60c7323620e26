"""Flow-control options (``mainspring.sdk.flow``): each option's checks and wire shape,
and what ``create_function`` does with them.

Every bad input is a :class:`~mainspring.FunctionConfigInvalidError` naming the option and
the field (and the function, when ``create_function`` finds it), never a pydantic
``ValidationError`` or a ``TypeError``.
"""

from __future__ import annotations

import datetime
import pickle
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import mainspring as inngest
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
from mainspring.sdk.option_base import OptionError

BAD_CEL = "event.data.("


def _refused(build: Callable[[], object], match: str) -> inngest.FunctionConfigInvalidError:
    with pytest.raises(inngest.FunctionConfigInvalidError, match=match) as info:
        build()
    assert not isinstance(info.value, pydantic.ValidationError | TypeError)
    return info.value


def _loose(cls: type[Any]) -> Callable[..., object]:
    """``cls`` with its signature hidden from the type checker, to pass it wrong arguments."""
    return cls


def _define(**options: Any) -> inngest.Function[Any]:
    client = inngest.Client(app_id="app")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), **options)
    async def fn(ctx: inngest.Context) -> None:
        return None

    made: inngest.Function[Any] = fn  # **options forwarded: both overloads match
    return made


# -- each option: what it accepts and how it is sent ------------------------------------


def test_concurrency_wire() -> None:
    assert Concurrency(limit=5).to_wire() == {"limit": 5}
    assert Concurrency(limit=2, key="event.data.user", scope="env").to_wire() == {
        "limit": 2,
        "key": "event.data.user",
        "scope": "env",
    }
    assert Concurrency(limit=1, scope="fn").to_wire() == {"limit": 1, "scope": "fn"}
    assert Concurrency(limit=1, key="event.data.a", scope="account").scope == "account"


def test_run_concurrency_wire_has_the_fn_scope() -> None:
    assert RunConcurrency(limit=3).to_wire() == {"limit": 3, "scope": "fn"}
    assert RunConcurrency(limit=1, key="event.data.user").to_wire() == {
        "limit": 1,
        "key": "event.data.user",
        "scope": "fn",
    }


def test_throttle_burst_defaults_to_one_and_is_always_sent() -> None:
    throttle = Throttle(limit=10, period=60_000)
    assert throttle.burst == 1
    assert throttle.to_wire() == {"limit": 10, "period": "1m", "burst": 1}
    assert _loose(Throttle)(limit=10, period=60_000, burst=None) == throttle
    assert Throttle(limit=1, period="2h", key="event.data.customer", burst=4).to_wire() == {
        "limit": 1,
        "period": "2h",
        "burst": 4,
        "key": "event.data.customer",
    }


@pytest.mark.parametrize(
    "period",
    [3_600_000, datetime.timedelta(hours=1), "1h", "60m", "3600s", "30m30m"],
)
def test_durations_in_any_form_are_kept_as_milliseconds(period: Any) -> None:
    throttle = Throttle(limit=1, period=period)
    assert throttle.period == 3_600_000
    assert throttle.period_ms() == 3_600_000
    assert throttle == Throttle(limit=1, period=datetime.timedelta(hours=1))
    assert hash(throttle) == hash(Throttle(limit=1, period=3_600_000))
    assert throttle.to_wire()["period"] == "1h"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(1_000, "1s"), (90_000, "90s"), (86_400_000, "1d"), (604_800_000, "1w"), (1_500, "1500ms")],
)
def test_periods_are_sent_as_the_largest_whole_unit(ms: int, text: str) -> None:
    assert Throttle(limit=1, period=ms).to_wire()["period"] == text


def test_rate_limit_wire() -> None:
    rate = RateLimit(limit=1, period=datetime.timedelta(hours=24), key="event.data.id")
    assert rate.period_ms() == 86_400_000
    assert rate.to_wire() == {"limit": 1, "period": "1d", "key": "event.data.id"}


def test_debounce_wire_and_milliseconds() -> None:
    plain = Debounce(period=5_000)
    assert (plain.period_ms(), plain.timeout_ms()) == (5_000, None)
    assert plain.to_wire() == {"period": "5s"}
    full = Debounce(period="30s", key="event.data.user", timeout=datetime.timedelta(minutes=5))
    assert (full.period_ms(), full.timeout_ms()) == (30_000, 300_000)
    assert full.to_wire() == {"period": "30s", "key": "event.data.user", "timeout": "5m"}
    assert Debounce(period="1m", timeout="1m").timeout_ms() == 60_000


def test_batch_wire_names_if_and_max_size() -> None:
    batch = Batch(max_size=100, timeout=5_000, key="event.data.user", if_exp="event.data.ok")
    assert batch.timeout_ms() == 5_000
    assert batch.to_wire() == {
        "maxSize": 100,
        "timeout": "5s",
        "key": "event.data.user",
        "if": "event.data.ok",
    }
    assert Batch(max_size=2, timeout="1m").to_wire() == {"maxSize": 2, "timeout": "1m"}
    assert Batch(max_size=10_000, timeout="1s").max_size == 10_000


def test_priority_and_singleton_wire() -> None:
    run = "event.data.plan == 'enterprise' ? 180 : 0"
    assert Priority(run=run).to_wire() == {"run": run}
    assert Priority().to_wire() == {}
    assert Singleton(mode="skip").to_wire() == {"mode": "skip"}
    assert Singleton(mode="cancel", key="event.data.user").to_wire() == {
        "mode": "cancel",
        "key": "event.data.user",
    }


def test_options_are_frozen_values() -> None:
    a = Concurrency(limit=2, key="event.data.user", scope="env")
    assert a == Concurrency(limit=2, key="event.data.user", scope="env")
    assert len({a, Concurrency(limit=2, key="event.data.user", scope="env")}) == 1
    with pytest.raises(pydantic.ValidationError):
        a.limit = 3


# -- each option: what it refuses ------------------------------------------------------

BAD_OPTIONS: list[tuple[str, Callable[[], object], str]] = [
    # limit 0, negative, not an int (bools and numeric strings included).
    (
        "concurrency limit 0",
        lambda: Concurrency(limit=0),
        r"^Concurrency\.limit: must be at least 1, got 0",
    ),
    (
        "concurrency limit -1",
        lambda: Concurrency(limit=-1),
        r"^Concurrency\.limit: must be at least 1",
    ),
    (
        "concurrency limit str",
        lambda: _loose(Concurrency)(limit="3"),
        r"^Concurrency\.limit: expected an int, got str '3'",
    ),
    (
        "concurrency limit bool",
        lambda: Concurrency(limit=True),
        r"^Concurrency\.limit: expected an int, got bool",
    ),
    (
        "concurrency limit float",
        lambda: _loose(Concurrency)(limit=2.0),
        r"^Concurrency\.limit: expected an int",
    ),
    (
        "run concurrency limit 0",
        lambda: RunConcurrency(limit=0),
        r"^RunConcurrency\.limit: must be at least 1",
    ),
    (
        "throttle limit 0",
        lambda: Throttle(limit=0, period="1m"),
        r"^Throttle\.limit: must be at least 1",
    ),
    (
        "throttle limit str",
        lambda: _loose(Throttle)(limit="3", period="1m"),
        r"^Throttle\.limit: expected an int, got str",
    ),
    (
        "throttle burst 0",
        lambda: Throttle(limit=1, period="1m", burst=0),
        r"^Throttle\.burst: must be at least 1",
    ),
    (
        "rate limit -5",
        lambda: RateLimit(limit=-5, period="1m"),
        r"^RateLimit\.limit: must be at least 1",
    ),
    ("missing limit", lambda: _loose(Throttle)(period="1m"), r"^Throttle\.limit: is required"),
    ("missing period", lambda: _loose(RateLimit)(limit=1), r"^RateLimit\.period: is required"),
    # Scopes.
    (
        "env scope without key",
        lambda: Concurrency(limit=1, scope="env"),
        r"^Concurrency\.key: is required with the 'env' scope",
    ),
    (
        "account scope without key",
        lambda: Concurrency(limit=1, scope="account"),
        r"^Concurrency\.key: is required with the 'account' scope",
    ),
    (
        "unknown scope",
        lambda: _loose(Concurrency)(limit=1, key="event.id", scope="app"),
        r"^Concurrency\.scope: expected one of 'fn', 'env', 'account', got str 'app'",
    ),
    (
        "upper-case scope",
        lambda: _loose(Concurrency)(limit=1, key="event.id", scope="ENV"),
        r"^Concurrency\.scope: expected one of",
    ),
    (
        "unknown mode",
        lambda: _loose(Singleton)(mode="queue"),
        r"^Singleton\.mode: expected one of 'skip', 'cancel'",
    ),
    ("missing mode", lambda: _loose(Singleton)(), r"^Singleton\.mode: is required"),
    # CEL expressions.
    (
        "concurrency key",
        lambda: Concurrency(limit=1, key=BAD_CEL),
        r"^Concurrency\.key: invalid expression",
    ),
    (
        "run concurrency key",
        lambda: RunConcurrency(limit=1, key=BAD_CEL),
        r"^RunConcurrency\.key: invalid expression",
    ),
    (
        "throttle key",
        lambda: Throttle(limit=1, period="1m", key=BAD_CEL),
        r"^Throttle\.key: invalid expression",
    ),
    (
        "rate limit key",
        lambda: RateLimit(limit=1, period="1m", key=BAD_CEL),
        r"^RateLimit\.key: invalid expression",
    ),
    (
        "debounce key",
        lambda: Debounce(period="1m", key=BAD_CEL),
        r"^Debounce\.key: invalid expression",
    ),
    (
        "batch key",
        lambda: Batch(max_size=2, timeout="1s", key=BAD_CEL),
        r"^Batch\.key: invalid expression",
    ),
    (
        "batch if",
        lambda: Batch(max_size=2, timeout="1s", if_exp=BAD_CEL),
        r"^Batch\.if_exp: invalid expression",
    ),
    ("priority run", lambda: Priority(run=BAD_CEL), r"^Priority\.run: invalid expression"),
    (
        "singleton key",
        lambda: Singleton(mode="skip", key=BAD_CEL),
        r"^Singleton\.key: invalid expression",
    ),
    (
        "empty key",
        lambda: Concurrency(limit=1, key="  "),
        r"^Concurrency\.key: must be a non-empty CEL expression",
    ),
    (
        "key not a string",
        lambda: _loose(Throttle)(limit=1, period="1m", key=5),
        r"^Throttle\.key: expected a string, got int 5",
    ),
    # Periods out of range.
    (
        "throttle period 0s",
        lambda: Throttle(limit=1, period="0s"),
        r"^Throttle\.period: '0s' is out of range: must be from 1s to 7d",
    ),
    (
        "throttle period 999 ms",
        lambda: Throttle(limit=1, period=999),
        r"^Throttle\.period: 999 ms is out of range",
    ),
    (
        "throttle period 8d",
        lambda: Throttle(limit=1, period=datetime.timedelta(days=8)),
        r"^Throttle\.period: .* is out of range: must be from 1s to 7d",
    ),
    (
        "throttle period negative",
        lambda: Throttle(limit=1, period=-1_000),
        r"^Throttle\.period: -1000 ms is out of range",
    ),
    (
        "rate limit period 25h",
        lambda: RateLimit(limit=1, period="25h"),
        r"^RateLimit\.period: '25h' is out of range: must be from 1s to 1d",
    ),
    (
        "rate limit period 500ms",
        lambda: RateLimit(limit=1, period=500),
        r"^RateLimit\.period: 500 ms is out of range",
    ),
    (
        "debounce period 0",
        lambda: Debounce(period=0),
        r"^Debounce\.period: 0 ms is out of range: must be from 1s to 7d",
    ),
    (
        "debounce period 8d",
        lambda: Debounce(period="8d"),
        r"^Debounce\.period: '8d' is out of range",
    ),
    (
        "debounce timeout 8d",
        lambda: Debounce(period="1m", timeout="8d"),
        r"^Debounce\.timeout: '8d' is out of range",
    ),
    (
        "debounce timeout < period",
        lambda: Debounce(period="10m", timeout="5m"),
        r"^Debounce\.timeout: 5m is shorter than the period 10m",
    ),
    (
        "batch timeout 61s",
        lambda: Batch(max_size=2, timeout="61s"),
        r"^Batch\.timeout: '61s' is out of range: must be from 1s to 1m",
    ),
    (
        "batch timeout 0",
        lambda: Batch(max_size=2, timeout=0),
        r"^Batch\.timeout: 0 ms is out of range",
    ),
    ("batch timeout missing", lambda: Batch(max_size=2), r"^Batch\.timeout: is required"),
    (
        "batch size 1",
        lambda: Batch(max_size=1, timeout="1s"),
        r"^Batch\.max_size: must be from 2 to 10,000, got 1",
    ),
    (
        "batch size 10001",
        lambda: Batch(max_size=10_001, timeout="1s"),
        r"^Batch\.max_size: must be from 2 to 10,000, got 10001",
    ),
    # Durations that are no durations.
    (
        "period float",
        lambda: _loose(Throttle)(limit=1, period=1.5),
        r"^Throttle\.period: expected a duration .*got float 1.5",
    ),
    (
        "period bool",
        lambda: Throttle(limit=1, period=True),
        r"^Throttle\.period: expected a duration",
    ),
    ("period word", lambda: Debounce(period="soon"), r"^Debounce\.period: invalid duration 'soon'"),
    (
        "period sub-millisecond",
        lambda: Debounce(period="1500us"),
        r"^Debounce\.period: '1500us' is not a whole number",
    ),
    (
        "period none",
        lambda: _loose(Throttle)(limit=1, period=None),
        r"^Throttle\.period: expected a duration",
    ),
    # Calls that are no calls.
    (
        "unknown field",
        lambda: _loose(Throttle)(limit=1, period="1m", brust=2),
        r"^Throttle\.brust: is not an option of Throttle \(it takes limit, period, key, burst\)",
    ),
    (
        "positional arguments",
        lambda: _loose(Throttle)(1, "1m"),
        r"^Throttle: takes keyword arguments only",
    ),
]


@pytest.mark.parametrize(
    ("build", "match"),
    [pytest.param(build, match, id=name) for name, build, match in BAD_OPTIONS],
)
def test_bad_options_are_refused_naming_the_option_and_field(
    build: Callable[[], object], match: str
) -> None:
    error = _refused(build, match)
    assert isinstance(error, OptionError)


def test_option_errors_keep_their_parts_and_pickle() -> None:
    with pytest.raises(OptionError) as info:
        Batch(max_size=1, timeout="1s")
    error = info.value
    assert (error.option, error.field) == ("Batch", "max_size")
    assert error.problem.startswith("must be from 2")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.option, copy.field, copy.problem, str(copy)) == (
        error.option,
        error.field,
        error.problem,
        str(error),
    )


# -- create_function: the options together ---------------------------------------------


def test_create_function_keeps_the_options_in_its_flow_config() -> None:
    limit = Concurrency(limit=2, key="event.data.user", scope="env")
    fn = _define(
        concurrency=[limit, RunConcurrency(limit=5)],
        throttle=Throttle(limit=1, period="1m"),
        rate_limit=RateLimit(limit=10, period="1h"),
        debounce=Debounce(period="5s"),
        priority=Priority(run="event.data.p"),
        idempotency="event.data.id",
        singleton=Singleton(mode="cancel"),
    )
    flow = fn.config.flow
    assert flow.concurrency == (limit,)
    assert flow.run_concurrency == RunConcurrency(limit=5)
    assert flow.throttle is not None
    assert flow.throttle.period_ms() == 60_000
    assert flow.rate_limit is not None
    assert flow.rate_limit.period_ms() == 3_600_000
    assert flow.debounce is not None
    assert flow.debounce.period_ms() == 5_000
    assert flow.priority == Priority(run="event.data.p")
    assert flow.idempotency == "event.data.id"
    assert flow.singleton == Singleton(mode="cancel")
    assert not flow.empty
    wire = fn.config.to_wire("http://app/api")
    assert wire["concurrency"] == {
        "fn": [{"limit": 5, "scope": "fn"}],
        "step": [{"limit": 2, "key": "event.data.user", "scope": "env"}],
    }
    assert wire["singleton"] == {"mode": "cancel"}


def test_no_options_no_flow_fields() -> None:
    fn = _define()
    assert fn.config.flow == FlowConfig()
    assert fn.config.flow.empty
    wire = fn.config.to_wire("http://app/api")
    flow_keys = {"concurrency", "throttle", "rateLimit", "debounce", "batchEvents"}
    flow_keys |= {"priority", "idempotency", "singleton"}
    assert flow_keys.isdisjoint(wire)
    assert _define(concurrency=[]).config.flow.empty


def test_single_limits_and_empty_priorities() -> None:
    single = _define(concurrency=Concurrency(limit=3))
    assert single.config.flow.concurrency == (Concurrency(limit=3),)
    assert single.config.to_wire("http://a")["concurrency"] == [{"limit": 3}]
    run_only = _define(concurrency=[RunConcurrency(limit=1)])
    assert run_only.config.to_wire("http://a")["concurrency"] == {
        "fn": [{"limit": 1, "scope": "fn"}]
    }
    # A Priority without `run` sets nothing (and so goes with batching).
    no_run = _define(priority=Priority(), batch_events=Batch(max_size=2, timeout="1s"))
    assert no_run.config.flow.priority is None
    assert "priority" not in no_run.config.to_wire("http://a")


BAD_COMBINATIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "three concurrency limits",
        {"concurrency": [Concurrency(limit=1), Concurrency(limit=2), Concurrency(limit=3)]},
        r"concurrency: at most 2 Concurrency limits, got 3",
    ),
    (
        "two run limits",
        {"concurrency": [RunConcurrency(limit=1), RunConcurrency(limit=2)]},
        r"concurrency: at most one RunConcurrency limit, got 2",
    ),
    (
        "priority with batching",
        {"priority": Priority(run="1"), "batch_events": Batch(max_size=2, timeout="1s")},
        r"batch_events: cannot be combined with priority",
    ),
    (
        "debounce with batching",
        {"debounce": Debounce(period="1s"), "batch_events": Batch(max_size=2, timeout="1s")},
        r"batch_events: cannot be combined with debounce",
    ),
    (
        "singleton with batching",
        {"singleton": Singleton(mode="skip"), "batch_events": Batch(max_size=2, timeout="1s")},
        r"batch_events: cannot be combined with singleton",
    ),
    (
        "cancel with batching",
        {"cancel": [inngest.Cancel(event="stop")], "batch_events": Batch(max_size=2, timeout="1s")},
        r"batch_events: cannot be combined with cancel",
    ),
    (
        "all of them with batching",
        {
            "cancel": [inngest.Cancel(event="stop")],
            "debounce": Debounce(period="1s"),
            "singleton": Singleton(mode="skip"),
            "priority": Priority(run="1"),
            "batch_events": Batch(max_size=2, timeout="1s"),
        },
        r"batch_events: cannot be combined with cancel, debounce, singleton, priority",
    ),
    ("invalid idempotency", {"idempotency": BAD_CEL}, r"idempotency: invalid expression"),
    ("empty idempotency", {"idempotency": ""}, r"idempotency: must be a non-empty"),
    # Wrong types passed.
    ("throttle=5", {"throttle": 5}, r"throttle: expected a Throttle, got int 5"),
    (
        "concurrency=[5]",
        {"concurrency": [5]},
        r"concurrency\[0\]: expected Concurrency or RunConcurrency, got int 5",
    ),
    (
        "concurrency=5",
        {"concurrency": 5},
        r"concurrency: expected a list of Concurrency or RunConcurrency, got int 5",
    ),
    ("concurrency='x'", {"concurrency": "x"}, r"concurrency: expected a list .*got str 'x'"),
    (
        "a Throttle as rate_limit",
        {"rate_limit": Throttle(limit=1, period="1m")},
        r"rate_limit: expected a RateLimit, got Throttle",
    ),
    ("debounce dict", {"debounce": {"period": "1s"}}, r"debounce: expected a Debounce, got dict"),
    ("batch_events int", {"batch_events": 10}, r"batch_events: expected a Batch"),
    ("priority str", {"priority": "event.data.p"}, r"priority: expected a Priority, got str"),
    ("singleton str", {"singleton": "skip"}, r"singleton: expected a Singleton, got str"),
    (
        "idempotency int",
        {"idempotency": 5},
        r"idempotency: expected a CEL expression string, got int 5",
    ),
]


@pytest.mark.parametrize(
    ("options", "match"),
    [pytest.param(options, match, id=name) for name, options, match in BAD_COMBINATIONS],
)
def test_create_function_refuses_naming_the_function(options: dict[str, Any], match: str) -> None:
    _refused(lambda: _define(**options), r"^function 'f': " + match)


def test_batching_goes_with_the_other_options() -> None:
    fn = _define(
        batch_events=Batch(max_size=50, timeout="10s", key="event.data.user"),
        concurrency=[Concurrency(limit=2)],
        throttle=Throttle(limit=1, period="1s"),
        rate_limit=RateLimit(limit=1, period="1s"),
        idempotency="event.data.id",
    )
    assert fn.config.flow.batch_events == Batch(max_size=50, timeout=10_000, key="event.data.user")


# -- FlowConfig.check: the registration's names ----------------------------------------


def test_flow_check_names_wire_fields_when_asked() -> None:
    batch = Batch(max_size=2, timeout="1s")
    flow = FlowConfig(batch_events=batch, priority=Priority(run="1"))
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^batchEvents: .*priority\.run"):
        flow.check(wire=True)
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^batch_events: .*priority"):
        flow.check()
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^batchEvents: .* cancel"):
        FlowConfig(batch_events=batch).check(has_cancel=True, wire=True)
    three = tuple(Concurrency(limit=n) for n in (1, 2, 3))
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^concurrency: at most 2 step"):
        FlowConfig(concurrency=three).check(wire=True)
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^concurrency\.step: at most 2"):
        FlowConfig(concurrency=three, run_concurrency=RunConcurrency(limit=1)).check(wire=True)
    FlowConfig(batch_events=batch, priority=Priority()).check(wire=True)
