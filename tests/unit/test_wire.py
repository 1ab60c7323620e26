"""HTTP forms of call requests and responses (protocol §2.3, §3, §4.3)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import random
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
import rfc8785

from mainspring.protocol import headers as h
from mainspring.protocol import wire
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    ErrorPayload,
    Failure,
    Ops,
    StepOp,
)
from mainspring.protocol.opcodes import Opcode
from mainspring.protocol.wire import (
    HttpReply,
    WireError,
    canonical_json,
    request_from_wire,
    request_to_wire,
    response_from_http,
    response_to_http,
)

NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
SDK = {"x-inngest-sdk": "mainspring:v0.1.0"}
A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
EVENT = {
    "id": "01HQ0000000000000000000000",
    "name": "app/user.created",
    "data": {"n": 1.5, "s": "é", "list": [1, None, True]},
    "ts": 1_700_000_000_000,
    "user": {"email": "x@example.com"},
    "v": "2024-01-01",
}
SECOND = {"id": "01HQ0000000000000000000001", "name": "app/b", "data": {}, "ts": 1, "user": {}}


def _request(**changes: Any) -> CallRequest:
    request = CallRequest(
        fn_id="app-fn",
        event=EVENT,
        events=[EVENT, SECOND],
        steps={
            A: {"data": {"x": [1, 2]}},
            B: None,
            C: {"error": {"name": "StepError", "message": "boom", "stack": "at f"}},
            D: EVENT,
            "f" * 40: {"data": 3.0},
        },
        ctx=CallContext(
            run_id="01HRUN0000000000000000000",
            attempt=2,
            max_attempts=4,
            stack=(A, B, C, D),
            disable_immediate_execution=True,
            fn_id="5b0c1f6e-0000-4000-8000-000000000000",
            env="prod",
        ),
        step_id="e" * 40,
        version=2,
    )
    return dataclasses.replace(request, **changes)


# -- canonical JSON ------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": [1, {"d": 1, "c": 2}], "a": None}) == (
        b'{"a":null,"b":[1,{"c":2,"d":1}]}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (1e21, b"1e+21"),
        (1e-7, b"1e-7"),
        (0.1, b"0.1"),
        (123456789012.5, b"123456789012.5"),
        (2**53 - 1, b"9007199254740991"),
        (2**60, b"1152921504606847000"),  # beyond 2**53: a double, as the Go server makes it
        (True, b"true"),
    ],
)
def test_canonical_json_numbers_follow_es6(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


def test_canonical_json_strings_are_utf8_with_minimal_escapes() -> None:
    text = 'é€\U0001f600\u2028"\\\n\x01/'
    assert canonical_json(text) == '"é€\U0001f600\u2028\\"\\\\\\n\\u0001/"'.encode()


def test_canonical_json_orders_keys_by_utf16_code_units() -> None:
    # Code-point order would put U+FFFF first; UTF-16 puts the surrogate pair (D83D) first.
    assert canonical_json({"\uffff": 1, "\U0001f600": 2, "a": 3}) == (
        '{"a":3,"\U0001f600":2,"\uffff":1}'.encode()
    )


def test_canonical_json_accepts_mappings_and_tuples() -> None:
    assert canonical_json(_Frozen({"b": (1, 2), "a": _Frozen({})})) == b'{"a":{},"b":[1,2]}'


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "cannot canonicalise"),
        (float("inf"), "cannot canonicalise"),
        ({1: "x"}, "keys must be strings"),
        ({"a": {1, 2}}, "set is not a JSON value"),
        ("\ud800", "cannot canonicalise"),
        (10**400, "cannot canonicalise"),
    ],
)
def test_canonical_json_rejects_non_json(value: Any, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        canonical_json(value)


class _Str(str):
    pass


def _rfc8785(value: Any) -> bytes:
    """The reference: the ``rfc8785`` package on the plain form, as without the fast path."""
    return rfc8785.dumps(wire._plain(value))


def test_orjson_writes_every_character_as_rfc8785() -> None:
    """What the fast path of canonical_json rests on: orjson escapes exactly the characters
    RFC 8785 escapes, in the same spelling, and writes all others as UTF-8 (this pins it
    for every code point, should an orjson release change its escaping)."""
    bmp = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)
    astral = "".join(chr(c) for c in range(0x10000, 0x110000))
    assert orjson.dumps(bmp) == rfc8785.dumps(bmp)
    assert orjson.dumps(astral) == rfc8785.dumps(astral)
    assert wire._fast_canonical({"k": bmp}) == rfc8785.dumps({"k": bmp})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"b": 1, "a": [True, None, "x"], "": {}}, id="plain"),
        pytest.param({"\uffff": 1, "\ue000": 2, "\u00e9": 3, "z": 4}, id="bmp-keys"),
        pytest.param([2**53 - 1, -(2**53 - 1), 0, -0], id="safe-integers"),
        pytest.param(("a", ("b",)), id="tuples"),
    ],
)
def test_canonical_json_fast_path_is_taken_without_floats(value: Any) -> None:
    fast = wire._fast_canonical(value)
    assert fast is not None
    assert fast == _rfc8785(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": [1.0]}, id="float"),
        pytest.param({"a": 2**53}, id="big-integer"),
        pytest.param({"\U0001f600": 1, "\uffff": 2}, id="astral-keys"),
        pytest.param({"a": "\U0001f600"}, id="astral-value"),  # only keys matter; safe anyway
        pytest.param(collections.OrderedDict(a=1), id="dict-subclass"),
        pytest.param({"a": _Str("s")}, id="str-subclass"),
        pytest.param({1: 2}, id="int-key"),
    ],
)
def test_canonical_json_fast_path_steps_aside_where_bytes_could_differ(value: Any) -> None:
    assert wire._fast_canonical(value) is None


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    keys = ["a", "b", "B", "", "é", "\u00ff", "\ue000", "\uffff", "\U0001f600", "\x01", "a b"]
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), 2**53, 2**63, rng.randrange(10**6)])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.0, 0.1, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 3.5])
    if kind in (3, 4):
        return "".join(rng.choice(keys) for _ in range(rng.randrange(4)))
    if kind in (5, 6):
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    items = [_random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    return items if kind == 7 else tuple(items)


def test_canonical_json_equals_rfc8785_on_random_documents() -> None:
    rng = random.Random(8785)
    fast = 0
    for _ in range(3000):
        value = _random_json(rng)
        assert canonical_json(value) == _rfc8785(value), value
        fast += wire._fast_canonical(value) is not None
    assert 300 < fast < 2700  # both paths were exercised


# -- call requests -------------------------------------------------------------------------------


def test_request_round_trip_preserves_everything() -> None:
    request = _request()
    body = request_to_wire(request)
    assert request_from_wire(body, fn_id="app-fn", step_id="e" * 40) == request


def test_request_round_trip_of_discovery_with_use_api() -> None:
    request = _request(
        events=[],
        steps={},
        step_id=None,
        version=-1,
        ctx=CallContext(run_id="r", use_api=True),
    )
    assert request_from_wire(request_to_wire(request), fn_id="app-fn", step_id="step") == request


def test_request_body_is_canonical_and_has_every_field() -> None:
    body = request_to_wire(_request())
    decoded = orjson.loads(body)
    assert body == canonical_json(decoded)
    assert body.startswith(b'{"ctx":{"attempt":2,"disable_immediate_execution":true,"env":"prod",')
    assert b": " not in body
    assert b", " not in body
    assert decoded["ctx"] == {
        "fn_id": "5b0c1f6e-0000-4000-8000-000000000000",
        "run_id": "01HRUN0000000000000000000",
        "env": "prod",
        "step_id": "step",
        "attempt": 2,
        "max_attempts": 4,
        "stack": {"stack": [A, B, C, D], "current": 4},
        "disable_immediate_execution": True,
        "use_api": False,
        "job_id": "",
        "qi_id": "",
        "request_id": "",
    }
    assert decoded["use_api"] is False
    assert decoded["defers"] == {}
    assert decoded["version"] == 2
    assert decoded["event"]["data"]["n"] == 1.5
    assert decoded["steps"][B] is None
    assert b'"ffffffffffffffffffffffffffffffffffffffff":{"data":3}' in body
    assert decoded["events"][1] == SECOND
    assert set(decoded) == {"event", "events", "steps", "defers", "version", "use_api", "ctx"}


def test_request_events_get_user_and_data_objects() -> None:
    bare = {"name": "app/x", "data": None, "id": "1", "ts": 5}
    decoded = orjson.loads(request_to_wire(_request(event=bare, events=[bare])))
    expected = {"name": "app/x", "data": {}, "user": {}, "id": "1", "ts": 5}
    assert decoded["event"] == expected
    assert decoded["events"] == [expected]
    assert bare["data"] is None  # the caller's event is left alone


def test_request_reads_a_lazy_memo_mapping_key_by_key() -> None:
    reads: list[str] = []

    class Lazy(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            reads.append(key)
            return {"data": key.upper()}

        def __iter__(self) -> Iterator[str]:
            return iter(["k1", "k2"])

        def __len__(self) -> int:
            return 2

        def items(self) -> Any:
            raise AssertionError("items() must not be used")

        def values(self) -> Any:
            raise AssertionError("values() must not be used")

    decoded = orjson.loads(request_to_wire(_request(steps=Lazy())))
    assert decoded["steps"] == {"k1": {"data": "K1"}, "k2": {"data": "K2"}}
    assert sorted(reads) == ["k1", "k2"]


def test_unsigned_request_body_holds_the_same_values_as_the_canonical_one() -> None:
    request = _request()
    plain = request_to_wire(request, canonical=False)
    assert orjson.loads(plain) == orjson.loads(request_to_wire(request))
    assert plain.startswith(b'{"event":')  # orjson's order, not sorted
    assert request_from_wire(plain, fn_id="app-fn", step_id="e" * 40) == request


def test_unsigned_request_body_reads_a_lazy_memo_mapping_and_converts_big_integers() -> None:
    class Lazy(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            return {"data": {"big": 2**60, "nested": _Frozen({"n": 1})}}

        def __iter__(self) -> Iterator[str]:
            return iter(["k1"])

        def __len__(self) -> int:
            return 1

    decoded = orjson.loads(request_to_wire(_request(steps=Lazy()), canonical=False))
    assert decoded["steps"] == {"k1": {"data": {"big": float(2**60), "nested": {"n": 1}}}}
    assert isinstance(decoded["steps"]["k1"]["data"]["big"], float)  # as canonical_json has it


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({1: "x"}, "keys must be strings"),
        ({"a": {1, 2}}, "set is not a JSON value"),
        (datetime.datetime(2024, 1, 1), "datetime is not a JSON value"),
        (10**400, "cannot encode JSON"),
    ],
    ids=["int-key", "set", "datetime", "huge-integer"],
)
def test_unsigned_request_body_rejects_non_json(value: Any, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        request_to_wire(_request(steps={A: {"data": value}}), canonical=False)


class _Frozen(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


MINIMAL: dict[str, Any] = {
    "event": {"name": "app/x", "data": {"a": 1}},
    "steps": {A: {"data": 1}},
    "use_api": False,
    "ctx": {
        "run_id": "run",
        "attempt": 0,
        "disable_immediate_execution": False,
        "stack": {"stack": None, "current": 0},
        "qi_id": "ignored",
    },
    "future_field": {"ignored": True},
}


@pytest.mark.parametrize("step_id", [None, "", "step"])
def test_request_from_wire_accepts_the_minimum(step_id: str | None) -> None:
    request = request_from_wire(orjson.dumps(MINIMAL), fn_id="app-fn", step_id=step_id)
    assert request == CallRequest(
        fn_id="app-fn",
        event=MINIMAL["event"],
        events=[MINIMAL["event"]],
        steps={A: {"data": 1}},
        ctx=CallContext(run_id="run", attempt=0, max_attempts=5, stack=()),
        step_id=None,
        version=-1,
    )


def test_request_from_wire_takes_use_api_from_either_place() -> None:
    body = {**MINIMAL, "ctx": {**MINIMAL["ctx"], "use_api": True}}
    request = request_from_wire(orjson.dumps(body), fn_id="f", step_id=A)
    assert request.ctx.use_api
    assert request.events == []
    assert request.step_id == A


def _without(path: str) -> dict[str, Any]:
    body = orjson.loads(orjson.dumps(MINIMAL))
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    del target[last]
    return dict(body)


def _with(path: str, value: Any) -> dict[str, Any]:
    body = orjson.loads(orjson.dumps(MINIMAL))
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    target[last] = value
    return dict(body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (_without("event"), r"event: Field required"),
        (_without("steps"), r"steps: Field required"),
        (_without("use_api"), r"use_api: Field required"),
        (_without("ctx"), r"ctx: Field required"),
        (_without("ctx.run_id"), r"ctx\.run_id: Field required"),
        (_without("ctx.attempt"), r"ctx\.attempt: Field required"),
        (_without("ctx.stack"), r"ctx\.stack: Field required"),
        (_without("ctx.disable_immediate_execution"), r"ctx\.disable_immediate_execution"),
        (_with("ctx.attempt", "1"), r"ctx\.attempt: Input should be a valid integer"),
        (_with("ctx.attempt", True), r"ctx\.attempt: Input should be a valid integer"),
        (_with("ctx.attempt", -1), r"ctx\.attempt: Input should be greater than or equal to 0"),
        (_with("ctx.max_attempts", 0), r"ctx\.max_attempts"),
        (_with("ctx.run_id", ""), r"ctx\.run_id"),
        (_with("ctx.stack", {"stack": [A, 7]}), r"ctx\.stack\.stack\[1\]"),
        (_with("event", []), r"event: Input should be a valid dictionary"),
        (_with("events", [{}, "x"]), r"events\[1\]"),
        (_with("use_api", "false"), r"use_api: Input should be a valid boolean"),
        (_with("version", 2.0), r"version: Input should be a valid integer"),
    ],
)
def test_request_from_wire_names_the_bad_field(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(WireError, match=f"invalid call request body: .*{problem}"):
        request_from_wire(orjson.dumps(body), fn_id="f", step_id=None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [(b"not json", "not valid JSON"), (b"", "not valid JSON"), (b"[1]", "expected a JSON object")],
)
def test_request_from_wire_rejects_garbage(raw: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=f"call request body.*{problem}"):
        request_from_wire(raw, fn_id="f", step_id=None)


# -- responses: round trips ----------------------------------------------------------------------


def _through_http(response: CallResponse) -> CallResponse:
    reply = response_to_http(response, sdk_version="0.1.0")
    return response_from_http(reply.status, reply.headers, reply.body, now=NOW)


def test_complete_round_trip() -> None:
    reply = response_to_http(Complete(output=b'{"ok":[1,2]}'), sdk_version="0.1.0")
    assert reply == HttpReply(
        200,
        {
            "content-type": "application/json",
            "x-inngest-req-version": "2",
            "x-inngest-sdk": "mainspring:v0.1.0",
        },
        b'{"ok":[1,2]}',
    )
    assert _through_http(Complete(output=b'{"ok":[1,2]}')) == Complete(output=b'{"ok":[1,2]}')
    assert _through_http(Complete(output=b"null")) == Complete(output=b"null")


def test_reply_without_sdk_version_leaves_the_header_to_the_transport() -> None:
    reply = response_to_http(Complete(output=b"1"))
    assert h.SDK not in reply.headers
    assert reply.headers[h.REQ_VERSION] == "2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.status = 500  # type: ignore[misc]


OPS = [
    StepOp(
        op=Opcode.STEP_RUN,
        id=A,
        name="fetch",
        display_name="Fetch user",
        opts={"type": "step.run"},
        data=b'{"user":{"id":1,"tags":["a"]}}',
        user_id="fetch",
        index=0,
    ),
    StepOp(
        op=Opcode.STEP_PLANNED,
        id=B,
        name="left",
        display_name="left",
        opts={"type": "step.run", "parallelMode": "race"},
        user_id="left",
        index=2,
    ),
    StepOp(op=Opcode.SLEEP, id=C, name="1h", display_name="nap", opts={"duration": "1h"}),
    StepOp(
        op=Opcode.STEP_ERROR,
        id=D,
        name="charge",
        display_name="charge",
        error=ErrorPayload(
            name="ValueError", message="declined", stack="Traceback", code="unknown", data=[1]
        ),
        user_id="charge",
    ),
]


def test_ops_round_trip() -> None:
    reply = response_to_http(Ops(ops=OPS), sdk_version="0.1.0")
    assert reply.status == 206
    assert h.NO_RETRY not in reply.headers
    assert h.RETRY_AFTER not in reply.headers
    decoded = orjson.loads(reply.body)
    assert [op["op"] for op in decoded] == ["StepRun", "StepPlanned", "Sleep", "StepError"]
    assert decoded[0]["data"] == {"user": {"id": 1, "tags": ["a"]}}
    assert decoded[1]["opts"]["parallelMode"] == "race"
    back = _through_http(Ops(ops=OPS))
    # Over HTTP an answer says the request version it speaks (X-Inngest-Req-Version).
    assert back == Ops(ops=OPS, request_version=2)
    assert isinstance(back, Ops)
    assert back.ops[1].parallel_mode == "race"


def test_ops_no_retry_round_trip() -> None:
    reply = response_to_http(Ops(ops=OPS[3:], no_retry=True))
    assert reply.headers[h.NO_RETRY] == "true"
    back = _through_http(Ops(ops=OPS[3:], no_retry=True))
    assert back == Ops(ops=OPS[3:], no_retry=True, request_version=2)


def test_ops_retry_after_round_trip() -> None:
    at = NOW + datetime.timedelta(minutes=5, milliseconds=250)
    reply = response_to_http(Ops(ops=OPS[3:], retry_after=at))
    assert reply.headers[h.RETRY_AFTER] == "2024-01-01T00:05:00.250Z"
    assert reply.headers[h.NO_RETRY] == "false"
    back = _through_http(Ops(ops=OPS[3:], retry_after=at))
    assert back == Ops(ops=OPS[3:], retry_after=at, request_version=2)


def test_empty_ops_are_refused() -> None:
    with pytest.raises(WireError, match="empty 206"):
        response_to_http(Ops(ops=[]))


ERROR = ErrorPayload(name="RuntimeError", message="kaput", stack="Traceback...", code="unknown")


def test_failure_round_trip_retriable() -> None:
    reply = response_to_http(Failure(error=ERROR))
    assert (reply.status, reply.headers[h.NO_RETRY]) == (500, "false")
    assert orjson.loads(reply.body) == {
        "code": "unknown",
        "name": "RuntimeError",
        "message": "kaput",
        "stack": "Traceback...",
    }
    assert _through_http(Failure(error=ERROR)) == Failure(error=ERROR, retriable=True)


def test_failure_round_trip_non_retriable() -> None:
    failure = Failure(error=ErrorPayload(name="NonRetriableError", message="no"), retriable=False)
    reply = response_to_http(failure)
    assert (reply.status, reply.headers[h.NO_RETRY]) == (400, "true")
    # No stack: the key is still there, null, as the official SDKs write it.
    assert orjson.loads(reply.body) == {"name": "NonRetriableError", "message": "no", "stack": None}
    assert _through_http(failure) == failure


def test_error_payload_wire_form_always_has_a_stack() -> None:
    assert ErrorPayload(name="E", message="m").to_wire() == {
        "name": "E",
        "message": "m",
        "stack": None,
    }
    full = ErrorPayload(name="E", message="m", stack="tb", code="c", data=[1], cause={"x": 1})
    assert full.to_wire() == {
        "name": "E",
        "message": "m",
        "stack": "tb",
        "code": "c",
        "data": [1],
        "cause": {"x": 1},
    }
    assert ErrorPayload.from_wire(full.to_wire()) == full


def test_failure_round_trip_retry_after() -> None:
    at = NOW + datetime.timedelta(hours=2)
    failure = Failure(error=ERROR, retry_after=at)
    reply = response_to_http(failure)
    assert reply.headers[h.RETRY_AFTER] == "2024-01-01T02:00:00.000Z"
    assert reply.headers[h.NO_RETRY] == "false"
    assert _through_http(failure) == failure


def test_non_retriable_failure_drops_retry_after() -> None:
    failure = Failure(error=ERROR, retriable=False, retry_after=NOW)
    assert h.RETRY_AFTER not in response_to_http(failure).headers


# -- responses: parsing what other SDKs send -----------------------------------------------------


def _parse(status: int, body: Any, **headers: str) -> CallResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    found = {**SDK, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return response_from_http(status, found, raw, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    found = response_from_http(
        500, {"X-Inngest-SDK": "inngest-js:v3", "X-Inngest-No-Retry": "true"}, b"{}", now=NOW
    )
    assert isinstance(found, Failure)
    assert not found.retriable


def test_missing_sdk_header_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="no x-inngest-sdk header"):
        response_from_http(200, {"content-type": "application/json"}, b"1", now=NOW)
    with pytest.raises(WireError, match="no x-inngest-sdk header"):
        response_from_http(200, {"x-inngest-sdk": ""}, b"1", now=NOW)


@pytest.mark.parametrize(
    ("status", "problem"), [(200, "200 body is not valid JSON"), (206, "206 body")]
)
def test_non_json_bodies_are_wire_errors(status: int, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        _parse(status, b"<html>Bad Gateway</html>")


@pytest.mark.parametrize("status", [400, 500])
def test_an_sdk_error_body_that_is_not_json_is_the_message(status: int) -> None:
    found = _parse(status, b"  ValueError: boom\nat handler  ", x_inngest_no_retry="true")
    assert found == Failure(
        error=ErrorPayload(name="Error", message="ValueError: boom\nat handler"), retriable=False
    )


def test_a_long_error_body_that_is_not_json_is_cut() -> None:
    found = _parse(500, b"x" * 100_000)
    assert isinstance(found, Failure)
    assert found.error.message == "x" * 32 * 1024


def test_complete_keeps_the_output_bytes() -> None:
    assert _parse(200, b' {"a": 1}\n') == Complete(output=b'{"a": 1}')


def test_206_single_object_legacy_form() -> None:
    found = _parse(206, {"op": "StepRun", "id": A, "data": 5})
    assert found == Ops(ops=[StepOp(op=Opcode.STEP_RUN, id=A, name="", display_name="", data=b"5")])


@pytest.mark.parametrize(
    ("name", "op"),
    [
        ("steprun", Opcode.STEP_RUN),
        ("STEPPLANNED", Opcode.STEP_PLANNED),
        ("AiGateway", Opcode.AI_GATEWAY),
        ("waitForEvent", Opcode.WAIT_FOR_EVENT),
    ],
)
def test_opcode_names_are_case_insensitive(name: str, op: Opcode) -> None:
    found = _parse(206, [{"op": name, "id": A}])
    assert isinstance(found, Ops)
    assert found.ops[0].op is op


def test_step_run_data_is_kept_serialised() -> None:
    found = _parse(
        206,
        b'[{"op":"StepRun","id":"%s","data": {"b" : [1, 2.5, null]}},'
        b'{"op":"StepRun","id":"%s","data":null},{"op":"RunComplete"}]' % (A.encode(), B.encode()),
    )
    assert isinstance(found, Ops)
    assert [op.data for op in found.ops] == [b'{"b":[1,2.5,null]}', b"null", None]


def test_step_failed_error_and_userland() -> None:
    body = [
        {
            "op": "StepFailed",
            "id": A,
            "displayName": "Pay",
            "error": {"name": "E", "message": "m", "data": {"k": 1}, "cause": "x"},
            "userland": {"id": "pay", "index": 3},
            "timing": {"start": 1},
        }
    ]
    found = _parse(206, body, x_inngest_no_retry="true")
    assert found == Ops(
        ops=[
            StepOp(
                op=Opcode.STEP_FAILED,
                id=A,
                name="",
                display_name="Pay",
                error=ErrorPayload(name="E", message="m", data={"k": 1}, cause="x"),
                user_id="pay",
                index=3,
            )
        ],
        no_retry=True,
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([{"op": "Teleport", "id": A}], r"ops\[0\]\.op: unknown opcode 'Teleport'"),
        ([{"id": A}], r"ops\[0\]\.op: expected an opcode name"),
        ([{"op": 3, "id": A}], r"ops\[0\]\.op: expected an opcode name"),
        ([{"op": "StepRun"}], r"ops\[0\]\.id: StepRun needs the hashed step id"),
        ([{"op": "StepRun", "id": A}, {"op": "Sleep", "id": 7}], r"ops\[1\]\.id: expected str"),
        ([{"op": "StepError", "id": A}], r"ops\[0\]\.error: StepError needs an error object"),
        ([{"op": "StepError", "id": A, "error": "boom"}], r"ops\[0\]\.error: expected dict"),
        ([{"op": "StepPlanned", "id": A, "opts": [1]}], r"ops\[0\]\.opts: expected dict"),
        ([{"op": "StepRun", "id": A, "name": 5}], r"ops\[0\]\.name: expected str"),
        ([{"op": "StepRun", "id": A, "displayName": True}], r"ops\[0\]\.displayName"),
        (
            [{"op": "StepRun", "id": A, "userland": {"id": "x", "index": "1"}}],
            r"ops\[0\]\.userland\.index: expected int",
        ),
        ([{"op": "StepRun", "id": A, "userland": {"index": True}}], r"userland\.index"),
        (["StepRun"], r"ops\[0\]: expected an opcode object"),
        (5, r"206 body: expected an array"),
        ("StepRun", r"206 body: expected an array"),
    ],
)
def test_bad_opcodes_are_named(body: Any, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        _parse(206, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": "step_errored", "name": "ValueError", "message": "bad", "stack": "tb"},
            ErrorPayload(name="ValueError", message="bad", stack="tb", code="step_errored"),
        ),
        ({"error": {"name": "E", "message": "nested"}}, ErrorPayload(name="E", message="nested")),
        ({"body": {"name": "B", "message": "in body"}}, ErrorPayload(name="B", message="in body")),
        (
            {"error": "Step not found", "requestedStep": A, "foundSteps": []},
            ErrorPayload(name="Error", message="Step not found"),
        ),
        ("plain text error", ErrorPayload(name="Error", message="plain text error")),
        (None, ErrorPayload(name="Error", message="the function failed with HTTP 500")),
        ({}, ErrorPayload(name="Error", message="")),
        # An error encoded once more, whole or under `error`/`body`, as the reference reads it.
        (
            '{"name": "ValueError", "message": "twice", "stack": "tb"}',
            ErrorPayload(name="ValueError", message="twice", stack="tb"),
        ),
        (
            {"error": '{"name": "E", "message": "nested text"}'},
            ErrorPayload(name="E", message="nested text"),
        ),
        (
            {"body": '{"name": "B", "message": "body text"}'},
            ErrorPayload(name="B", message="body text"),
        ),
        ({"body": "not json"}, ErrorPayload(name="Error", message="")),
        # The ts SDK's nested cause is kept as it came.
        (
            {"name": "E", "message": "outer", "cause": {"name": "Inner", "message": "root"}},
            ErrorPayload(name="E", message="outer", cause={"name": "Inner", "message": "root"}),
        ),
    ],
)
def test_failure_error_extraction(body: Any, expected: ErrorPayload) -> None:
    found = _parse(500, body)
    assert isinstance(found, Failure)
    assert found.error == expected


@pytest.mark.parametrize(
    ("status", "header", "retriable"),
    [
        (500, None, True),
        (400, None, True),  # absent header means retry, whatever the status
        (404, None, True),
        (500, "true", False),
        (400, "true", False),
        (400, "false", True),
        (500, "False", True),
        (503, "", True),
    ],
)
def test_no_retry_header_is_authoritative(status: int, header: str | None, retriable: bool) -> None:
    extra = {} if header is None else {"x_inngest_no_retry": header}
    found = _parse(status, {"name": "E", "message": "m"}, **extra)
    assert isinstance(found, Failure)
    assert found.retriable is retriable
    assert found.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", NOW + datetime.timedelta(seconds=30)),
        (" 120 ", NOW + datetime.timedelta(minutes=2)),
        ("0", NOW + datetime.timedelta(seconds=1)),  # clamped up to 1s
        ("9999999", NOW + datetime.timedelta(hours=24)),  # clamped down to 24h
        ("2024-01-01T00:10:00Z", NOW + datetime.timedelta(minutes=10)),
        ("2024-01-01T00:10:00.500+00:00", NOW + datetime.timedelta(minutes=10, seconds=0.5)),
        ("2024-01-01T01:10:00+01:00", NOW + datetime.timedelta(minutes=10)),
        ("2024-01-01T00:10:00", NOW + datetime.timedelta(minutes=10)),  # naive means UTC
        ("Mon, 01 Jan 2024 00:05:00 GMT", NOW + datetime.timedelta(minutes=5)),
        ("2023-12-31T00:00:00Z", NOW + datetime.timedelta(seconds=1)),  # past: clamped up
        ("2030-01-01T00:00:00Z", NOW + datetime.timedelta(hours=24)),  # far: clamped down
    ],
)
def test_retry_after_parsing(value: str, expected: datetime.datetime) -> None:
    assert h.parse_retry_after(value, now=NOW) == expected
    found = _parse(500, {"name": "E", "message": "m"}, retry_after=value)
    assert found == Failure(error=ErrorPayload("E", "m"), retriable=True, retry_after=expected)


@pytest.mark.parametrize("value", ["soon", "", "-5", "12345678", "1.5", "Mon, 99 Foo"])
def test_garbled_retry_after_is_ignored(value: str) -> None:
    assert h.parse_retry_after(value, now=NOW) is None
    found = _parse(500, {"name": "E", "message": "m"}, retry_after=value)
    assert isinstance(found, Failure)
    assert found.retriable
    assert found.retry_after is None


def test_retry_after_on_a_206_with_a_step_error() -> None:
    found = _parse(206, [{"op": "StepError", "id": A, "error": {}}], retry_after="60")
    assert isinstance(found, Ops)
    assert found.retry_after == NOW + datetime.timedelta(minutes=1)
    assert not found.no_retry


def test_no_retry_header_wins_over_retry_after() -> None:
    found = _parse(500, {}, retry_after="60", x_inngest_no_retry="true")
    assert isinstance(found, Failure)
    assert (found.retriable, found.retry_after) == (False, None)


# -- 201 streaming wrapper -----------------------------------------------------------------------


def _stream(document: Any, *, outer: Mapping[str, str] = SDK) -> CallResponse:
    body = b"    " + orjson.dumps(document)  # keep-alive spaces precede the document
    return response_from_http(201, outer, body, now=NOW)


def test_stream_unwraps_a_string_encoded_206() -> None:
    inner = orjson.dumps([{"op": "StepRun", "id": A, "data": 1}]).decode()
    found = _stream({"status": 206, "headers": {"X-Inngest-No-Retry": "true"}, "body": inner})
    assert found == Ops(
        ops=[StepOp(op=Opcode.STEP_RUN, id=A, name="", display_name="", data=b"1")],
        no_retry=True,
    )


def test_stream_unwraps_an_inline_body_and_inner_headers() -> None:
    document = {"status": 500, "headers": {**SDK, "retry-after": "5"}, "body": {"message": "m"}}
    found = _stream(document, outer={})
    assert found == Failure(
        error=ErrorPayload("Error", "m"), retry_after=NOW + datetime.timedelta(seconds=5)
    )


@pytest.mark.parametrize(
    ("body", "output"),
    [('"hello"', b'"hello"'), ("hello", b'"hello"'), ({"a": 1}, b'{"a":1}'), (None, b"null")],
)
def test_stream_unwraps_a_200(body: Any, output: bytes) -> None:
    assert _stream({"status": 200, "headers": {}, "body": body}) == Complete(output=output)


def test_stream_error_document_is_a_failure() -> None:
    found = _stream({"error": "function crashed"})
    assert found == Failure(error=ErrorPayload("Error", "function crashed"), retriable=True)


def test_stream_legacy_retry_fields() -> None:
    document = {"status": 500, "body": "{}", "noRetry": True, "retryAt": "30"}
    found = _stream(document)
    assert isinstance(found, Failure)
    assert not found.retriable


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"status": 201, "body": "{}"}, "expected a final HTTP status, got 201"),
        ({"status": "200", "body": "{}"}, r"status: expected a final HTTP status"),
        ({"body": "{}"}, "expected a final HTTP status, got None"),
        ({"status": 200, "headers": [1]}, r"headers: expected dict"),
        ({"status": 200, "headers": {"x": 1}, "body": "1"}, r"headers\.x: expected a string"),
        ([1, 2], "expected a {status, headers, body} object"),
    ],
)
def test_bad_stream_wrappers_are_named(document: Any, problem: str) -> None:
    with pytest.raises(WireError, match=f"201 streamed body.*{problem}"):
        _stream(document)


def test_stream_needs_the_sdk_header_somewhere() -> None:
    with pytest.raises(WireError, match="no x-inngest-sdk"):
        _stream({"status": 200, "headers": {}, "body": "1"}, outer={})
    with pytest.raises(WireError, match="201 streamed body is not valid JSON"):
        response_from_http(201, SDK, b"   ", now=NOW)


def test_unexpected_status_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="unexpected HTTP status 302"):
        _parse(302, {})


@pytest.mark.parametrize(
    ("timing", "expected"),
    [
        (
            {"start": 1_700_000_000_000, "end": 1_700_000_000_005},
            (1_700_000_000_000, 1_700_000_000_005),
        ),
        ({"start": 5, "end": 4}, None),  # ends before it starts
        ({"start": "1", "end": 2}, None),  # another SDK's shape
        ("soon", None),
        (None, None),
    ],
)
def test_op_timing_is_read_when_it_is_ours_and_ignored_otherwise(
    timing: Any, expected: tuple[int, int] | None
) -> None:
    op = {"op": "StepRun", "id": A, "data": 1, "timing": timing}
    response = response_from_http(
        206, {"x-inngest-sdk": "mainspring:v0.1.0"}, orjson.dumps([op]), now=NOW
    )
    assert isinstance(response, Ops)
    assert response.ops[0].timing == expected


@pytest.mark.parametrize(
    ("header", "version"), [("1", 1), (" 2 ", 2), ("0", 0), (None, None), ("7", None), ("x", None)]
)
def test_the_request_version_an_sdk_answers_with_is_read(
    header: str | None, version: int | None
) -> None:
    headers = {"x-inngest-sdk": "js:v4.24.0"}
    if header is not None:
        headers["X-Inngest-Req-Version"] = header
    body = b'[{"op":"StepRun","id":"' + b"a" * 40 + b'","data":1}]'
    response = response_from_http(206, headers, body, now=datetime.datetime.now(datetime.UTC))
    assert isinstance(response, Ops)
    assert response.request_version == version


class _StoredMemos(dict[str, Any]):
    """A memo map that also holds its memos as stored JSON, as the engine's does."""

    def __init__(self, raw: dict[str, bytes]) -> None:
        super().__init__({key: orjson.loads(value) for key, value in raw.items()})
        self._raw = raw

    def stored_json(self) -> dict[str, bytes]:
        return self._raw


def test_an_unsigned_body_carries_stored_memos_as_they_are() -> None:
    """Unsigned, the stored bytes go unparsed (a fan-out's calls each carry every memo);
    signed, the same values are encoded canonically. Both read back the same."""
    raw = {"b": b'{"data": {"z": 1, "a": [1,2]}}', "a": b'{"data":2}'}
    request = dataclasses.replace(_request(), steps=_StoredMemos(raw))
    plain = request_to_wire(request, canonical=False)
    signed = request_to_wire(request, canonical=True)
    assert b'{"data": {"z": 1, "a": [1,2]}}' in plain  # byte for byte
    assert orjson.loads(plain)["steps"] == orjson.loads(signed)["steps"]
    assert b'{"data":{"a":[1,2],"z":1}}' in signed
