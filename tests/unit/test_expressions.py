"""The CEL dialect: triggers, extra functions, loose numbers, errors and interpolation."""

from __future__ import annotations

import base64
import dataclasses
import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mainspring.protocol.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    interpolate,
)

ORDER: dict[str, Any] = {
    "name": "shop/order.placed",
    "data": {
        "amount": 250,
        "plan": "pro",
        "tier": "gold",
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}, {"sku": "c", "qty": 5}],
        "customer": {"email": "Ann@Example.com"},
    },
}


def run(source: str, **variables: Any) -> Any:
    return compile_expression(source).evaluate(variables)


# --- trigger-style expressions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.amount > 100", True),
        ("event.data.amount > 300", False),
        ('event.data.plan == "pro"', True),
        ("event.data.plan == 'free'", False),
        ('event.data.plan == "pro" && event.data.amount >= 250', True),
        ('event.data.plan == "pro" && event.data.amount > 250', False),
        ('event.data.plan == "free" || event.data.amount > 100', True),
        ('event.data.plan == "free" || event.data.amount < 100', False),
        ('event.data.tier in ["gold", "silver"]', True),
        ('event.data.tier in ["bronze"]', False),
        ('"email" in event.data.customer', True),
        ("has(event.data.customer)", True),
        ("has(event.data.coupon)", False),
        ("!has(event.data.coupon)", True),
        ('event.name.startsWith("shop/")', True),
        ('event.name.startsWith("billing/")', False),
        ('event.name.endsWith(".placed") && event.name.contains("order")', True),
        ('event.name.matches("^shop/[a-z.]+$")', True),
        ("size(event.data.items) > 2", True),
        ("size(event.data.items) > 3", False),
        ("event.data.items.exists(i, i.qty > 4)", True),
        ("event.data.items.all(i, i.qty > 1)", False),
        ("event.data.items.exists_one(i, i.sku == 'b')", True),
        ("event.data.items.map(i, i.qty).filter(q, q > 1) == [2, 5]", True),
    ],
)
def test_trigger_expressions(source: str, expected: bool) -> None:
    assert compile_expression(source).matches({"event": ORDER}) is expected


def test_evaluate_returns_the_cel_value() -> None:
    assert run("event.data.items.map(i, i.sku)", event=ORDER) == ["a", "b", "c"]
    assert run("event.data.amount * 2", event=ORDER) == 500


def test_matches_uses_truthiness_of_non_boolean_results() -> None:
    assert compile_expression("event.data.plan").matches({"event": ORDER}) is True
    assert compile_expression("event.data.amount - 250").matches({"event": ORDER}) is False


def test_vars_variable_is_available() -> None:
    assert compile_expression("event.data.amount > vars.limit").matches(
        {"event": ORDER, "vars": {"limit": 200}}
    )


# --- extra functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('lowercase("MiXed Ünï")', "mixed ünï"),
        ('uppercase("MiXed")', "MIXED"),
        ('lowercase(event.data.customer.email) == "ann@example.com"', True),
        ('b64decode("aGVsbG8gd29ybGQ=") == "hello world"', True),
        ('b64decode("aGk")', "hi"),  # padding omitted
        (f'b64decode("{base64.urlsafe_b64encode(b"??>").decode()}")', "??>"),  # URL alphabet
        ('json_parse("{\\"a\\": [1, {\\"b\\": null}]}")', {"a": [1, {"b": None}]}),
        ('json_parse("{\\"n\\": 2.0}").n + 1', 3),  # parsed numbers are normalised too
        ('json_parse("[1, 2]").exists(x, x == 2)', True),
        ('date("2024-01-01T00:00:00Z") == timestamp("2024-01-01T00:00:00Z")', True),
        ('date("2024-01-01T02:00:00+02:00") == timestamp("2024-01-01T00:00:00Z")', True),
        ('date("2024-01-01") == timestamp("2024-01-01T00:00:00Z")', True),  # naive is UTC
        ('date(1704067200000) == timestamp("2024-01-01T00:00:00Z")', True),  # epoch ms
        ('date("2024-01-01T00:00:00Z") + duration("1h") < date("2024-01-01T01:00:01Z")', True),
    ],
)
def test_extra_functions(source: str, expected: Any) -> None:
    assert run(source, event=ORDER) == expected


def test_naive_dates_are_utc_whatever_the_local_zone() -> None:
    # The bindings read a naive datetime as local time, and cache the zone on first use:
    # only a fresh interpreter shows whether date() depends on it.
    code = (
        "from mainspring.protocol.expressions import compile_expression as c; "
        'print(c(\'date("2024-01-01T00:00:00") == timestamp("2024-01-01T00:00:00Z")\')'
        ".evaluate({}))"
    )
    env = {**os.environ, "TZ": "America/New_York", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"


def test_date_returns_an_aware_timestamp() -> None:
    assert run('date("2024-01-01T00:00:00.5Z")') == datetime(2024, 1, 1, 0, 0, 0, 500000, UTC)


def test_now_is_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    value = run("now()")
    after = datetime.now(UTC)
    assert isinstance(value, datetime)
    assert before <= value <= after


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        ('now_plus("1h")', timedelta(hours=1)),
        ('now_plus("30m")', timedelta(minutes=30)),
        ('now_plus("2h45m")', timedelta(hours=2, minutes=45)),
        ('now_plus("1d")', timedelta(days=1)),
        ('now_plus("1w")', timedelta(weeks=1)),
        ('now_plus(duration("90s"))', timedelta(seconds=90)),
        ('now_minus("1h")', timedelta(hours=-1)),
        ('now_minus("1d")', timedelta(days=-1)),
    ],
)
def test_now_plus_and_now_minus(source: str, offset: timedelta) -> None:
    before = datetime.now(UTC)
    value = run(source)
    after = datetime.now(UTC)
    assert before + offset <= value <= after + offset


def test_relative_time_in_a_condition() -> None:
    event = {"data": {"at": "2000-01-01T00:00:00Z"}}
    assert compile_expression('date(event.data.at) < now_minus("1d")').matches({"event": event})
    assert not compile_expression('date(event.data.at) > now_plus("1h")').matches({"event": event})


@pytest.mark.parametrize(
    "source",
    [
        'b64decode("%%%")',
        'json_parse("{not json")',
        'date("yesterday")',
        "date(true)",
        'now_plus("soon")',
        'now_minus("1y")',
        "lowercase(1)",
    ],
)
def test_bad_arguments_to_extra_functions_are_expression_errors(source: str) -> None:
    with pytest.raises(ExpressionError, match="evaluation failed") as caught:
        run(source)
    assert caught.value.expression == source
    assert not compile_expression(source).matches({})


# --- loose numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "n", "expected"),
    [
        ("event.data.n == 1", 1, True),
        ("event.data.n == 1", 1.0, True),
        ("event.data.n == 1.0", 1, True),
        ("event.data.n == 1u", 1, True),
        ("event.data.n != 1", 1.0, False),
        ("event.data.n < 1.5", 1, True),
        ("event.data.n >= 1u", 1.5, True),
        ("event.data.n in [1.0, 2.0]", 2, True),
        ("event.data.n + 1 == 2", 1.0, True),  # whole floats are ints
        ("event.data.n * 2.0 == 5.0", 2.5, True),
        ('event.data.n == "1"', 1, False),  # string vs number: unequal, not an error
        ('event.data.n != "1"', 1, True),
        ("event.data.n > 1", 2**63, True),  # beyond int64: a double, never a uint
        ("event.data.n + 1.0 > 1e18", 2**63, True),
        ("event.data.n == 0.1 + 0.2", 0.30000000000000004, True),
    ],
)
def test_mixed_numeric_comparisons(source: str, n: Any, expected: bool) -> None:
    assert compile_expression(source).evaluate({"event": {"data": {"n": n}}}) is expected


def test_whole_floats_reach_cel_as_ints() -> None:
    assert run("event.data", event={"data": [1.0, -2.0, 2.5, True]}) == [1, -2, 2.5, True]
    assert type(run("event.data[0]", event={"data": [1.0]})) is int


def test_string_ordered_against_a_number_is_no_match() -> None:
    expression = compile_expression("event.data.n < 1")
    with pytest.raises(ExpressionError):
        expression.evaluate({"event": {"data": {"n": "a"}}})
    assert expression.matches({"event": {"data": {"n": "a"}}}) is False


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["event.data.missing == 1", "event.missing.deeper == 1", "event.data.missing != 1"],
)
def test_missing_keys_do_not_match(source: str) -> None:
    expression = compile_expression(source)
    assert expression.matches({"event": ORDER}) is False
    with pytest.raises(ExpressionError, match="missing") as caught:
        expression.evaluate({"event": ORDER})
    assert source in str(caught.value)


def test_logical_operators_absorb_errors() -> None:
    assert compile_expression("event.data.missing == 1 || true").matches({"event": ORDER})
    assert not compile_expression("event.data.missing == 1 && true").matches({"event": ORDER})


def test_undefined_variable_is_no_match() -> None:
    assert compile_expression("async.data.id == 1").matches({"event": ORDER}) is False


@pytest.mark.parametrize(
    "source",
    ["", "event.data.amount >", "event.data.amount > > 1", "'unterminated", "foo(", "a b"],
)
def test_invalid_syntax_raises_naming_the_expression(source: str) -> None:
    with pytest.raises(ExpressionError, match="invalid expression") as caught:
        compile_expression(source)
    assert isinstance(caught.value, ValueError)
    assert caught.value.expression == source
    assert repr(source) in str(caught.value)


def test_expression_error_survives_pickling() -> None:
    error = ExpressionError("1 ==", "invalid expression: boom")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.expression, copy.reason, str(copy)) == (error.expression, error.reason, str(error))


# --- compiled expressions -----------------------------------------------------------------


def test_compiled_expressions_are_cached_and_immutable() -> None:
    expression = compile_expression("event.data.amount > 100")
    assert compile_expression("event.data.amount > 100") is expression
    assert expression.source == "event.data.amount > 100"
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.source = "true"  # type: ignore[misc]


def test_evaluation_does_not_mutate_variables() -> None:
    event = {"data": {"n": 1.0}}
    compile_expression("event.data.n == 1").evaluate({"event": event})
    assert type(event["data"]["n"]) is float


def test_one_expression_is_shared_between_threads() -> None:
    expression = compile_expression("event.data.n % 2 == 0")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda n: expression.matches({"event": {"data": {"n": n}}}), range(200))
        )
    assert results == [n % 2 == 0 for n in range(200)]


# --- waitForEvent / cancel conditions -----------------------------------------------------


def test_wait_for_event_condition_with_both_events() -> None:
    expression = compile_expression("event.data.id == async.data.id")
    trigger = {"data": {"id": "a1"}}
    assert expression.matches({"event": trigger, "async": {"data": {"id": "a1"}}})
    assert not expression.matches({"event": trigger, "async": {"data": {"id": "b2"}}})
    assert not expression.matches({"event": trigger, "async": {"data": {}}})


@pytest.mark.parametrize(
    ("source", "event", "expected"),
    [
        ("event.data.id == async.data.id", {"data": {"id": "a1"}}, '"a1" == async.data.id'),
        ("event.data.s == async.x", {"data": {"s": 'say "hi"'}}, '"say \\"hi\\"" == async.x'),
        ("event.data.s", {"data": {"s": "it's"}}, '"it\'s"'),
        ("event.data.s", {"data": {"s": "a\\b\nc\td\x00"}}, '"a\\\\b\\nc\\td\\u0000"'),
        ("event.data.s", {"data": {"s": "é 😀"}}, '"é 😀"'),
        ("event.data.user", {"data": {"user": {"a": {"b": [1]}}}}, '{"a": {"b": [1]}}'),
        ("event.data.user.a", {"data": {"user": {"a": {"b": [1]}}}}, '{"b": [1]}'),
        ("event.data.xs", {"data": {"xs": [1, "two", [3.5], {}]}}, '[1, "two", [3.5], {}]'),
        ("event.data.n", {"data": {"n": 42}}, "42"),
        ("event.data.n", {"data": {"n": 42.0}}, "42"),
        ("event.data.n", {"data": {"n": 0.5}}, "0.5"),
        ("event.data.n", {"data": {"n": 1e300}}, "1e+300"),
        ("-event.data.n", {"data": {"n": -7}}, "-(-7)"),
        ("event.data.n", {"data": {"n": -7.25}}, "(-7.25)"),
        ("event.data.n", {"data": {"n": float("nan")}}, 'double("NaN")'),
        ("event.data.n", {"data": {"n": float("-inf")}}, 'double("-inf")'),
        (
            "[event.data.t, event.data.f, event.data.z]",
            {"data": {"t": True, "f": False, "z": None}},
            "[true, false, null]",
        ),
        ("event.name", {"name": "a/b"}, '"a/b"'),
        ("event", {"name": "a", "data": {}}, '{"name": "a", "data": {}}'),
        ("event . data . id", {"data": {"id": "a1"}}, '"a1"'),
        # Only event.* references change.
        (
            'async.data.id == "event.data.id" && \'event\' != r"event" && """event""" != b"event"',
            {"data": {"id": "a1"}},
            'async.data.id == "event.data.id" && \'event\' != r"event" && """event""" != b"event"',
        ),
        (
            '"quote \\" event.data.id" == event.data.id',
            {"data": {"id": "a1"}},
            '"quote \\" event.data.id" == "a1"',
        ),
        (
            "myevent.x == async.event.x && event_x == 1",
            {"x": 1},
            "myevent.x == async.event.x && event_x == 1",
        ),
        (
            "event.data.id // event.data.id\n == async.id",
            {"data": {"id": "a1"}},
            '"a1" // event.data.id\n == async.id',
        ),
        # Method calls, indexing and macros apply to the inlined value.
        ('event.data.id.startsWith("a")', {"data": {"id": "a1"}}, '"a1".startsWith("a")'),
        ("event.data.xs[0]", {"data": {"xs": [9]}}, "[9][0]"),
        ('event.data["id"]', {"data": {"id": "a1"}}, '{"id": "a1"}["id"]'),
        ("size(event.data.xs)", {"data": {"xs": [1]}}, "size([1])"),
        ('event.data.all(k, k == "all")', {"data": {"all": 1}}, '{"all": 1}.all(k, k == "all")'),
        # In a raw string a backslash escapes nothing: the second literal is a string.
        ("r'\\' + 'event.data.id'", {"data": {"id": "a1"}}, "r'\\' + 'event.data.id'"),
        # has() needs a field selection; a missing key keeps failing as it did.
        ("has(event.data.id)", {"data": {"id": "a1"}}, 'has({"id": "a1"}.id)'),
        ("event.data.missing == 1", {"data": {"id": "a1"}}, '{"id": "a1"}.missing == 1'),
        ("event.nope.deeper == 1", {"data": 1}, '{"data": 1}.nope.deeper == 1'),
    ],
)
def test_interpolation(source: str, event: Mapping[str, Any], expected: str) -> None:
    assert interpolate(source, event) == expected


def test_interpolation_rejects_invalid_expressions() -> None:
    with pytest.raises(ExpressionError, match="invalid expression"):
        interpolate("event.data.id ==", {"data": {"id": "a1"}})


def test_interpolation_rejects_values_with_no_cel_literal() -> None:
    with pytest.raises(ExpressionError, match="cannot interpolate") as caught:
        interpolate("event.data.raw == async.data.raw", {"data": {"raw": b"\x00"}})
    assert caught.value.expression == "event.data.raw == async.data.raw"


TRIGGER: dict[str, Any] = {
    "name": "app/signup",
    "data": {
        "id": "a1",
        "email": 'O\'Brien "the" \\ <ob@x.io>\n',
        "n": 3.0,
        "ratio": -0.25,
        "ok": True,
        "none": None,
        "tags": ["x", "y"],
        "nested": {"k": {"v": [1, {"w": "z"}]}},
    },
}
CONDITIONS = [
    "event.data.id == async.data.id",
    "event.data.email == async.data.email && event.data.ok == async.data.ok",
    "event.data.n == async.data.n",
    "event.data.n + 1 == async.data.n + 1",
    "event.data.ratio < async.data.ratio",
    "event.data.none == async.data.none",
    "async.data.tag in event.data.tags",
    "event.data.nested.k.v[1].w == async.data.nested.k.v[1].w",
    "event.data.nested == async.data.nested",
    "has(event.data.id) && has(async.data.id)",
    "has(event.data.missing) || async.data.id == 'a1'",
    "event.data.missing == async.data.id",
    "lowercase(event.data.email) == lowercase(async.data.email)",
    "event.data.tags.exists(t, t == async.data.tag)",
    "event.data.id.startsWith(async.data.id)",
]
CANDIDATES: list[dict[str, Any]] = [
    TRIGGER,
    {"data": {**TRIGGER["data"], "id": "b2", "n": 3, "ratio": 0, "tag": "y", "none": 0}},
    {"data": {"id": "a1", "tag": "q", "email": TRIGGER["data"]["email"].upper()}},
    {"data": {}},
]


def _outcome(expression: Expression, variables: Mapping[str, Any]) -> Any:
    try:
        return expression.evaluate(variables)
    except ExpressionError:
        return ExpressionError


@pytest.mark.parametrize("source", CONDITIONS)
def test_interpolated_condition_evaluates_like_the_original(source: str) -> None:
    original = compile_expression(source)
    interpolated = compile_expression(interpolate(source, TRIGGER))
    assert "event" not in interpolated.source  # no reference left
    outcomes = [
        (
            _outcome(original, {"event": TRIGGER, "async": candidate}),
            _outcome(interpolated, {"async": candidate}),
        )
        for candidate in CANDIDATES
    ]
    assert [a for a, _ in outcomes] == [b for _, b in outcomes]
    assert any(a is True for a, _ in outcomes) or "missing" in source  # not all vacuous


@pytest.mark.parametrize(
    "source",
    ['"a" + ".b" * 20_000', '"(" * 300 + "1" + ")" * 300'],
    ids=["member-chain", "nesting"],
)
def test_expressions_too_deep_for_the_parser_are_refused_not_crashing(source: str) -> None:
    """The Rust parser's stack overflows (the process dies) on a long enough member chain:
    such expressions are refused before it sees them. In a child process, so that a
    regression kills it rather than the test run."""
    script = (
        "from mainspring.protocol.expressions import ExpressionError, compile_expression\n"
        "try:\n"
        f"    compile_expression({source})\n"
        "except ExpressionError as exc:\n"
        "    print(exc.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("too complex to parse"), done.stdout


def test_literals_do_not_count_toward_the_parser_bounds() -> None:
    # An event's values are spliced into wait conditions as literals, of any size.
    value = "(" * 1000 + "." * 5000
    assert compile_expression(f"async.data.a == {value!r}").matches(
        {"async": {"data": {"a": value}}}
    )
