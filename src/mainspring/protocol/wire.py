"""Call requests and responses as HTTP bodies, statuses and headers (protocol §2, §3).

The in-memory messages (:mod:`mainspring.protocol.messages`) are what the SDK and the
executor work with; this module is the only place that knows their HTTP form. Both
directions are here so that the two ends cannot drift apart:

- executor → SDK: :func:`request_to_wire` / :func:`request_from_wire`;
- SDK → executor: :func:`response_to_http` / :func:`response_from_http`.

Parsing is strict because its input is untrusted: every problem raises :class:`WireError`
naming the field, which the SDK answers with a 4xx and the executor records as a failed,
retriable attempt. Unknown keys are ignored so newer peers keep working. The one lenient
part is an SDK's error body (4xx/5xx): whatever its form, it is the error to report.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import orjson
import pydantic
import rfc8785

from mainspring.protocol import headers as h
from mainspring.protocol.consts import DEFAULT_RETRIES, REQUEST_VERSION
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    Drift,
    ErrorPayload,
    Failure,
    Ops,
    StepOp,
)
from mainspring.protocol.opcodes import Opcode

_T = TypeVar("_T")
#: JSON numbers are IEEE doubles: larger integers are not exactly representable (RFC 8785 §3.2.2.3).
_MAX_SAFE_INT: Final = 2**53 - 1
#: Ops that stand for one step and so must carry its hashed id.
_NEEDS_ID: Final = frozenset(Opcode) - {
    Opcode.NONE,
    Opcode.RUN_COMPLETE,
    Opcode.SYNC_RUN_COMPLETE,
    Opcode.DISCOVERY_REQUEST,
    Opcode.DEFER_ADD,
    Opcode.DEFER_ABORT,
}
_NEEDS_ERROR: Final = frozenset({Opcode.STEP_ERROR, Opcode.STEP_FAILED})


class WireError(ValueError):
    """A body or header that does not follow the protocol; the message names the field."""


@dataclasses.dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP response before a transport sends it (header names lowercase)."""

    status: int
    headers: dict[str, str]
    body: bytes


# -- canonical JSON ----------------------------------------------------------------------------

#: orjson for canonical bodies: sorted keys, and integers within ±(2**53-1) or an error.
_SORTED: Final = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
#: orjson for unsigned bodies: subclasses, dataclasses and datetimes are refused rather than
#: serialised in orjson's own way, so that every value goes out as :func:`_plain` has it.
_UNSIGNED: Final = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
#: Lead bytes of 4-byte UTF-8 sequences: characters outside the Basic Multilingual Plane.
_NON_BMP_LEADS: Final = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
#: The exact types whose orjson form is their RFC 8785 form (floats are not among them).
_JCS_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> Any:
    """``value`` as dicts, lists and scalars only, which is all ``rfc8785`` accepts.

    Mappings are read key by key (a lazy memo mapping loads each value once). Integers
    beyond ±(2**53-1) become floats, as the Go server's ``jcs.Transform`` makes them,
    rather than failing the whole call.
    """
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else float(value)
    if isinstance(value, Mapping):
        out = {}
        for key in value:
            if not isinstance(key, str):
                raise WireError(f"JSON object keys must be strings, got {key!r}")
            out[key] = _plain(value[key])
        return out
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, orjson.Fragment):
        return value  # JSON already (stored memos in an unsigned body): kept as it is
    raise WireError(f"{type(value).__name__} is not a JSON value")


def _floatless(value: Any) -> bool:
    """Whether ``value`` is built of exact dicts, lists, tuples, strings, integers, booleans
    and None only: then orjson's sorted output is its RFC 8785 form, given the two checks
    :func:`canonical_json` adds (integer range, key order)."""
    kind = type(value)
    if kind in _JCS_SCALARS:
        return True
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False  # a float, a Mapping that is not a dict, a subclass, anything else
    for item in items:  # noqa: SIM110 (all() over a generator takes twice as long)
        if type(item) not in _JCS_SCALARS and not _floatless(item):
            return False
    return True


def _fast_canonical(value: Any) -> bytes | None:
    """RFC 8785 bytes of ``value`` from orjson, or None where they could differ.

    orjson writes strings, integers, ``true``/``false``/``null`` and the punctuation exactly
    as RFC 8785 does (``tests/unit/test_wire.py`` checks every code point), so its sorted
    output is canonical unless ``value`` holds a float (ES6 number form: ``1`` for 1.0,
    ``1e+21``), an integer beyond ±(2**53-1) (a double in JCS; orjson refuses it), or object
    keys outside the Basic Multilingual Plane (RFC 8785 orders keys by UTF-16 code units,
    orjson by code points: the two differ only for such keys). Checking the structure is
    about ten times cheaper than ``rfc8785`` itself, which is pure Python.
    """
    try:
        if not _floatless(value):
            return None
        body = orjson.dumps(value, option=_SORTED)
    except (orjson.JSONEncodeError, RecursionError):
        return None  # a big integer, a key that is not a string, too deep: the slow path says
    if not body.isascii() and any(lead in body for lead in _NON_BMP_LEADS):
        return None  # maybe such a key (or only such a value): let rfc8785 order them
    return body


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``: sorted keys, no whitespace, ES6 number form.

    Call-request bodies must be canonical when signed: the executor signs exactly these
    bytes, and the Python SDK re-canonicalises the body it receives before checking the
    signature, so any other spelling (``1.0``, spaces, key order) would fail verification.
    """
    fast = _fast_canonical(value)
    if fast is not None:
        return fast
    try:
        return rfc8785.dumps(_plain(value))
    except (rfc8785.CanonicalizationError, OverflowError, RecursionError) as exc:
        raise WireError(f"cannot canonicalise JSON: {exc}") from exc


def plain_json(value: Any) -> bytes:
    """Compact JSON of ``value`` with the values :func:`canonical_json` would give (integers
    beyond ±(2**53-1) as doubles, Mappings read key by key), in orjson's spelling and key
    order: for bodies that are not signed, where no one re-canonicalises them.

    One difference: orjson writes NaN and the infinities as ``null`` where canonical_json
    refuses them; values parsed from JSON (every stored memo and event) never hold them.
    """
    try:
        return orjson.dumps(value, option=_UNSIGNED)
    except orjson.JSONEncodeError:
        pass  # a big integer, a Mapping, a subclass...: the walk converts or names it
    try:
        return orjson.dumps(_plain(value))
    except (orjson.JSONEncodeError, OverflowError, RecursionError) as exc:
        raise WireError(f"cannot encode JSON: {exc}") from exc


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"{what} is not valid JSON: {exc}") from exc


# -- call request (§2.3) -----------------------------------------------------------------------


def _event_to_wire(event: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: event[key] for key in event}
    for key in ("user", "data"):  # the py SDK wants objects here, never null
        if out.get(key) is None:
            out[key] = {}
    return out


def _steps_to_wire(steps: Mapping[str, Any], canonical: bool) -> Any:
    """The memo map for a body. Unsigned, memos kept as JSON (``stored_json()``, the
    engine's stored bytes) go as they are: every call of a run carries all its memos, so
    parsing and re-encoding them made a fan-out of n calls cost O(n^2) in JSON work.
    Signed, every value is re-encoded canonically."""
    stored = getattr(steps, "stored_json", None)
    if stored is not None and not canonical:
        fragment = orjson.Fragment
        return {key: fragment(raw) for key, raw in stored().items()}
    # A dict, read key by key: a lazy memo mapping loads each value once.
    return steps if type(steps) is dict else {key: steps[key] for key in steps}


def request_to_wire(request: CallRequest, *, canonical: bool = True) -> bytes:
    """The body of a call request: JCS-canonical (sign these exact bytes), or with
    ``canonical=False`` plain compact JSON of the same values, for an unsigned call (the
    SDK re-canonicalises a body only to check its signature)."""
    ctx = request.ctx
    stack = list(ctx.stack)
    steps = request.steps
    encode = canonical_json if canonical else plain_json
    return encode(
        {
            "event": _event_to_wire(request.event),
            "events": [_event_to_wire(event) for event in request.events],
            "steps": _steps_to_wire(steps, canonical),
            "defers": {},
            "version": request.version,
            # Deprecated duplicate of ctx.use_api, but the py SDK requires it.
            "use_api": ctx.use_api,
            "ctx": {
                "fn_id": ctx.fn_id,
                "run_id": ctx.run_id,
                "env": ctx.env,
                # The config step id, not the target (that travels in ?stepId=).
                "step_id": "step",
                "attempt": ctx.attempt,
                "max_attempts": ctx.max_attempts,
                "stack": {"stack": stack, "current": len(stack)},
                "disable_immediate_execution": ctx.disable_immediate_execution,
                "use_api": ctx.use_api,
                "job_id": ctx.job_id,
                # The queue item being run, which a checkpointing SDK names when it
                # records steps during the call (POST /v1/checkpoint/{run}/async, §13).
                "qi_id": ctx.job_id,
                "request_id": ctx.request_id,
                **({} if ctx.step_ops is None else {"step_ops": dict(ctx.step_ops)}),
                **({"step_versions": dict(ctx.step_versions)} if ctx.step_versions else {}),
            },
        }
    )


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="ignore", frozen=True)


class _Stack(_Model):
    stack: list[str] | None = None


class _Ctx(_Model):
    run_id: str = pydantic.Field(min_length=1)
    attempt: int = pydantic.Field(ge=0)
    max_attempts: int = pydantic.Field(default=DEFAULT_RETRIES + 1, ge=1)
    stack: _Stack
    disable_immediate_execution: bool
    fn_id: str = ""
    env: str = ""
    use_api: bool = False
    job_id: str | None = None
    request_id: str | None = None
    step_ops: dict[str, str] | None = None
    step_versions: dict[str, str] | None = None


class _Body(_Model):
    """The fields the py SDK requires, plus the optional ones we use (§2.3)."""

    event: dict[str, Any]
    events: list[dict[str, Any]] | None = None
    steps: dict[str, Any] | None
    use_api: bool
    version: int = -1
    ctx: _Ctx


def _describe(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        parts.append(f"{path.lstrip('.') or 'body'}: {item['msg']}")
    return "; ".join(parts)


def request_from_wire(body: bytes, *, fn_id: str, step_id: str | None) -> CallRequest:
    """Parse a call-request body; ``fn_id`` and ``step_id`` come from the query string.

    ``step_id`` ``"step"`` (or empty) means discovery, no target step.
    """
    data = _loads(body, "call request body")
    if not isinstance(data, dict):
        raise WireError("call request body: expected a JSON object")
    try:
        parsed = _Body.model_validate(data)
    except pydantic.ValidationError as exc:
        raise WireError(f"invalid call request body: {_describe(exc)}") from exc
    ctx = parsed.ctx
    use_api = parsed.use_api or ctx.use_api
    events = parsed.events
    if events is None:
        events = [] if use_api else [parsed.event]
    return CallRequest(
        fn_id=fn_id,
        event=parsed.event,
        events=events,
        steps=parsed.steps or {},
        ctx=CallContext(
            run_id=ctx.run_id,
            attempt=ctx.attempt,
            max_attempts=ctx.max_attempts,
            stack=tuple(ctx.stack.stack or ()),
            disable_immediate_execution=ctx.disable_immediate_execution,
            fn_id=ctx.fn_id,
            env=ctx.env,
            use_api=use_api,
            job_id=ctx.job_id or "",
            request_id=ctx.request_id or "",
            step_ops=ctx.step_ops,
            step_versions=ctx.step_versions,
        ),
        step_id=None if step_id in (None, "", "step") else step_id,
        version=parsed.version,
    )


# -- call response: SDK side -------------------------------------------------------------------


def _dumps(value: Any, what: str) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise WireError(f"{what} is not serialisable as JSON: {exc}") from exc


def response_to_http(response: CallResponse, *, sdk_version: str | None = None) -> HttpReply:
    """200 / 206 / 4xx-5xx for a call response (§3.1).

    ``x-inngest-no-retry`` is set on every failure (the executor treats it as
    authoritative); a non-retriable failure answers 400, a retriable one 500, as the spec
    and the ts SDK do. Pass ``sdk_version`` to stamp ``x-inngest-sdk``, which the executor
    requires; otherwise the transport must add it.
    """
    headers = {h.CONTENT_TYPE: h.JSON_CONTENT_TYPE, h.REQ_VERSION: str(REQUEST_VERSION)}
    if sdk_version is not None:
        headers[h.SDK] = h.sdk_header_value(sdk_version)
    if isinstance(response, (Complete, Ops)) and response.drift is not None:
        headers[h.DRIFT] = plain_json(
            {"unreached": list(response.drift.unreached), "new": list(response.drift.new)}
        ).decode()
    if isinstance(response, Complete):
        return HttpReply(200, headers, response.output)
    if isinstance(response, Ops):
        if not response.ops:
            # The server reads `[]` as a broken checkpoint and re-drives discovery.
            raise WireError("refusing to send an empty 206: report at least one op")
        if response.plans:
            headers[h.PLANS] = ",".join(f"{first}:{count}" for first, count in response.plans)
        if response.no_retry:
            headers[h.NO_RETRY] = "true"
        elif response.retry_after is not None:
            headers[h.RETRY_AFTER] = h.format_retry_after(response.retry_after)
            headers[h.NO_RETRY] = "false"
        body = _dumps([op.to_wire() for op in response.ops], "206 ops")
        return HttpReply(206, headers, body)
    headers[h.NO_RETRY] = "false" if response.retriable else "true"
    if response.retriable and response.retry_after is not None:
        headers[h.RETRY_AFTER] = h.format_retry_after(response.retry_after)
    body = _dumps(response.error.to_wire(), "error body")
    return HttpReply(500 if response.retriable else 400, headers, body)


# -- call response: executor side --------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, kind: type[_T], where: str, default: _T) -> _T:
    """``obj[key]`` checked to be a ``kind``; ``default`` when absent or null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _error_payload(value: Any) -> ErrorPayload:
    return ErrorPayload.from_wire(value)


def parse_op(index: int, raw: Any) -> StepOp:
    """One op of a 206 body (or of a checkpoint's ``steps``); :class:`WireError` naming
    ``ops[index]`` and what is wrong with it."""
    where = f"206 body: ops[{index}]"
    if not isinstance(raw, dict):
        raise WireError(f"{where}: expected an opcode object, got {type(raw).__name__}")
    name = raw.get("op")
    if not isinstance(name, str):
        raise WireError(f"{where}.op: expected an opcode name, got {name!r}")
    try:
        op = Opcode.parse(name)
    except ValueError as exc:
        raise WireError(f"{where}.op: {exc}") from exc
    step_id = _field(raw, "id", str, where, "")
    if op in _NEEDS_ID and not step_id:
        raise WireError(f"{where}.id: {op.value} needs the hashed step id")
    error = _field(raw, "error", dict, where, None)
    if op in _NEEDS_ERROR and error is None:
        raise WireError(f"{where}.error: {op.value} needs an error object")
    userland: dict[str, Any] = _field(raw, "userland", dict, where, {})
    return StepOp(
        op=op,
        id=step_id,
        name=_field(raw, "name", str, where, ""),
        display_name=_field(raw, "displayName", str, where, ""),
        opts=_field(raw, "opts", dict, where, None),
        data=_dumps(raw["data"], f"{where}.data") if "data" in raw else None,
        error=None if error is None else _error_payload(error),
        user_id=_field(userland, "id", str, f"{where}.userland", ""),
        index=_field(userland, "index", int, f"{where}.userland", 0),
        timing=_timing(raw.get("timing")),
    )


def _timing(value: Any) -> tuple[int, int] | None:
    """A step's ``{"start", "end"}`` in epoch ms; None for any other shape (other SDKs put
    their own spans here, and the times are a nicety, never worth failing a call over)."""
    if not isinstance(value, dict):
        return None
    start, end = value.get("start"), value.get("end")
    if type(start) is int and type(end) is int and 0 < start <= end:
        return start, end
    return None


#: How much of an error body that is not JSON becomes the error's message.
_MAX_ERROR_TEXT: Final = 32 * 1024


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed, if it is the JSON of an object (an error encoded once more)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _failure_error(value: Any, status: int) -> ErrorPayload:
    """The error of a function-level failure (§3.4): the body's ``{name, message, stack}``,
    or one nested under ``error``/``body``; either may also come as the JSON text of an
    object. A body that is plain text is the message."""
    if isinstance(value, str):
        value = _json_object(value) or value
    if isinstance(value, dict):
        if "name" not in value and "message" not in value:
            for key in ("error", "body"):
                nested = value.get(key)
                if isinstance(nested, str):
                    nested = _json_object(nested)
                if isinstance(nested, dict):
                    return _error_payload(nested)
        return _error_payload(value)
    if isinstance(value, str) and value:
        return ErrorPayload(name="Error", message=value)
    return ErrorPayload(name="Error", message=f"the function failed with HTTP {status}")


def _error_body(body: bytes) -> Any:
    """A 4xx/5xx body: its JSON value, or its text when it is not JSON (an SDK's error
    must reach the run even when it is not the JSON the protocol asks for)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: _MAX_ERROR_TEXT * 4].decode("utf-8", "replace").strip()[:_MAX_ERROR_TEXT]


def _unwrap_stream(body: bytes) -> tuple[int, dict[str, str], bytes]:
    """The real response inside a 201 streaming wrapper ``{status, headers, body}`` (§3.5)."""
    doc = _loads(body, "201 streamed body")
    if not isinstance(doc, dict):
        raise WireError("201 streamed body: expected a {status, headers, body} object")
    status = doc.get("status")
    if status is None and "error" in doc:
        return 500, {}, _dumps({"error": doc["error"]}, "201 error")
    if not isinstance(status, int) or isinstance(status, bool) or status == 201:
        raise WireError(f"201 streamed body.status: expected a final HTTP status, got {status!r}")
    raw_headers = _field(doc, "headers", dict, "201 streamed body", {})
    inner: dict[str, str] = {}
    for key, value in raw_headers.items():
        if not isinstance(value, str):
            raise WireError(f"201 streamed body.headers.{key}: expected a string")
        inner[key.lower()] = value
    if doc.get("noRetry") is True:
        inner.setdefault(h.NO_RETRY, "true")
    if isinstance(doc.get("retryAt"), str):
        inner.setdefault(h.RETRY_AFTER, doc["retryAt"])
    value = doc.get("body")
    if isinstance(value, str):  # usually the real body, JSON-encoded once more
        try:
            orjson.loads(value)
            inner_body = value.encode()
        except orjson.JSONDecodeError:
            inner_body = _dumps(value, "201 body")
    else:
        inner_body = b"" if "body" not in doc else _dumps(value, "201 body")
    return status, inner, inner_body


def _drift(text: str | None) -> Drift | None:
    """The ``x-mainspring-drift`` header; None when absent or malformed (it only adds a
    note to the run's history, so a bad one is not worth failing an answer for)."""
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    unreached, new = value.get("unreached"), value.get("new", [])
    if not isinstance(unreached, list) or not isinstance(new, list):
        return None
    if not all(isinstance(v, str) for v in [*unreached, *new]) or not unreached:
        return None
    return Drift(unreached=tuple(unreached[:1000]), new=tuple(new[:1000]))


def _plans(text: str | None, ops: int) -> list[tuple[int, int]]:
    """The ``x-mainspring-plans`` header: ascending, disjoint ``first:count`` ranges of the
    206 body's ``ops`` ops. Only our SDK sends it, so a malformed one is a broken answer."""
    if not text:
        return []
    plans: list[tuple[int, int]] = []
    end = 0
    for part in text.split(","):
        first_text, _, count_text = part.strip().partition(":")
        try:
            first, count = int(first_text), int(count_text)
        except ValueError:
            raise WireError(f"{h.PLANS}: {part!r} is not first:count") from None
        if first < end or count < 1 or first + count > ops:
            raise WireError(f"{h.PLANS}: {part!r} is not a range of the answer's {ops} ops")
        plans.append((first, count))
        end = first + count
    return plans


#: Request versions an SDK may answer with (protocol §13): 0 is legacy ts hashing.
_REQUEST_VERSIONS: Final = frozenset({0, 1, 2})


def _request_version(text: str | None) -> int | None:
    """``X-Inngest-Req-Version`` of an answer; None when absent or not a known version
    (then the executor keeps the version it speaks)."""
    if text is None:
        return None
    try:
        version = int(text.strip())
    except ValueError:
        return None
    return version if version in _REQUEST_VERSIONS else None


def response_from_http(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime.datetime
) -> CallResponse:
    """Read an SDK's answer to a call request (executor side).

    Raises :class:`WireError` when the answer is not from an SDK (no ``x-inngest-sdk``),
    is not JSON, or breaks the opcode schema; the executor records that as a retriable
    failed attempt.
    """
    found = {key.lower(): value for key, value in headers.items()}
    if status == 201:
        status, inner, body = _unwrap_stream(body)
        found |= inner
    if not found.get(h.SDK):
        raise WireError(
            f"HTTP {status} response has no {h.SDK} header: it did not come from an Inngest SDK"
        )
    no_retry = found.get(h.NO_RETRY)
    retry_text = found.get(h.RETRY_AFTER)
    retry_after = None if retry_text is None else h.parse_retry_after(retry_text, now=now)
    drift = _drift(found.get(h.DRIFT))
    if status == 200:
        _loads(body, "200 body")  # validate; the output is stored as sent
        return Complete(output=body.strip(), drift=drift)
    if status == 206:
        value = _loads(body, "206 body")
        raw_ops = [value] if isinstance(value, dict) else value
        if not isinstance(raw_ops, list):
            raise WireError("206 body: expected an array of opcode objects")
        ops = [parse_op(i, raw) for i, raw in enumerate(raw_ops)]
        no_retry_ops = no_retry is not None and no_retry.strip().lower() == "true"
        plans = _plans(found.get(h.PLANS), len(ops))
        return Ops(
            ops=ops,
            retry_after=retry_after,
            no_retry=no_retry_ops,
            drift=drift,
            plans=plans,
            request_version=_request_version(found.get(h.REQ_VERSION)),
        )
    if 400 <= status <= 599:
        error = _failure_error(_error_body(body), status)
        # The header is authoritative when present; absent means retry (§3.4).
        retriable = no_retry is None or no_retry.strip().lower() != "true"
        return Failure(
            error=error, retriable=retriable, retry_after=retry_after if retriable else None
        )
    raise WireError(f"unexpected HTTP status {status} in answer to a call request")
