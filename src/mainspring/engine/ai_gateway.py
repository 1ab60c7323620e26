"""AI inference steps (``step.ai.infer``, opcode ``AIGateway``): the engine makes the
provider call itself, between the function's answer and the unit that records it.

:func:`resolve` turns an answer holding one ``AIGateway`` op into the answer the function
would have given had it made the call as a ``step.run``: the provider's JSON as a
``StepRun`` result (memo ``{"data": <response>}``, what the SDKs read back), or the
failure as a ``StepError`` (retried per the function's retry policy, each attempt in the
run's history) or a ``StepFailed`` (final). The executor records those as it records any
step. A retry is a call targeted at the step, which reports the op again (the key is
never kept for later: not in jobs, memos, history nor logs).

Which failures are retried: no answer (refused, reset, timed out), 5xx, 408 and 429 (after
the provider's ``Retry-After`` when it sends one), and a 2xx whose body is not JSON. Any
other 4xx fails the step at once: the same request with the same key and body gets the
same refusal (a bad key, an unknown model, a malformed body), and retrying it only spends
quota and time. What this engine does not do (streaming, ``auto_tool_call``, a format it
does not know) fails the step at once with a message naming it.

Several steps reported together (a parallel group holding an ``AIGateway`` op) keep the
shape of a group: each AI op is planned like a ``step.run`` and its targeted call, which
reports that op alone, makes the provider call. One extra SDK call per AI step of a group
buys the group's usual bookkeeping (pending set, one discovery, per-step retries).
"""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
import orjson

from mainspring.protocol import headers as h
from mainspring.protocol.messages import CallResponse, ErrorPayload, Ops, StepOp
from mainspring.protocol.opcodes import LAZY_OPS, Opcode

#: A model may think for minutes; past this an attempt fails (and is retried).
CALL_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 10.0
#: A step's output limit (protocol §3.2); a larger answer fails the step.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: How much of a provider's error body an error message quotes.
_SNIPPET_CHARS = 300
#: Request formats and how each sends the key (the reference gateway's four).
FORMATS = ("openai-chat", "anthropic", "gemini", "bedrock")
_RETRIED_4XX = frozenset({408, 429})
_ERROR_NAME = "GatewayError"
_REDACTED = "[redacted]"
_NOT_STEPS = frozenset({Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST, *LAZY_OPS})


@dataclasses.dataclass(slots=True)
class GatewayStepOp(StepOp):
    """An ``AIGateway`` step after its call: a ``StepRun``/``StepError``/``StepFailed``
    op whose final result is recorded under ``AIGateway`` (see :func:`recorded_op`)."""


def recorded_op(op: StepOp) -> str:
    """The op a step's final result is recorded under. An AI step's stays ``AIGateway``:
    that is the kind of step Mainspring's SDK checks a memo against on replay."""
    return Opcode.AI_GATEWAY.value if isinstance(op, GatewayStepOp) else op.op.value


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    url: str
    headers: dict[str, str] = dataclasses.field(repr=False)
    body: bytes = dataclasses.field(repr=False)
    key: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """``data`` (the provider's JSON) or ``error``; ``retry``: whether a later attempt may
    fare better; ``retry_after``: when the provider asked to be tried again."""

    data: bytes | None = None
    error: ErrorPayload | None = None
    retry: bool = False
    retry_after: datetime.datetime | None = None


class _Refused(Exception):
    """The op asks for something this engine does not do, or is malformed."""


class _TooLarge(Exception):
    """The provider's answer is over :data:`MAX_RESPONSE_BYTES`."""


async def resolve(response: CallResponse) -> CallResponse:
    """``response`` with its ``AIGateway`` ops dealt with (see the module docstring)."""
    if not isinstance(response, Ops) or not any(op.op is Opcode.AI_GATEWAY for op in response.ops):
        return response
    steps = [op for op in response.ops if op.op not in _NOT_STEPS]
    if len(steps) > 1:
        ops = [_planned(op) if op.op is Opcode.AI_GATEWAY else op for op in response.ops]
        return dataclasses.replace(response, ops=ops)
    [ai] = steps
    outcome = await _attempt(ai)
    ops = [_outcome_op(ai, outcome) if op is ai else op for op in response.ops]
    # The SDK's no-retry header speaks of its own StepErrors; this one is the engine's.
    return dataclasses.replace(response, ops=ops, retry_after=outcome.retry_after, no_retry=False)


def _kept_opts(op: StepOp) -> dict[str, Any] | None:
    """The op's opts without the request (and its key): only the parallel mode."""
    mode = (op.opts or {}).get("parallelMode")
    return {"parallelMode": mode} if mode is not None else None


def _planned(op: StepOp) -> StepOp:
    return dataclasses.replace(op, op=Opcode.STEP_PLANNED, opts=_kept_opts(op))


def _outcome_op(op: StepOp, outcome: _Outcome) -> GatewayStepOp:
    if outcome.error is None:
        kind, data, error = Opcode.STEP_RUN, outcome.data, None
    else:
        kind = Opcode.STEP_ERROR if outcome.retry else Opcode.STEP_FAILED
        data, error = None, outcome.error
    return GatewayStepOp(
        op=kind,
        id=op.id,
        name=op.name,
        display_name=op.display_name,
        opts=_kept_opts(op),
        data=data,
        error=error,
        user_id=op.user_id,
        index=op.index,
    )


async def _attempt(op: StepOp) -> _Outcome:
    step = op.user_id or op.display_name or op.id
    try:
        request = _request(op.opts or {})
    except _Refused as exc:
        return _failed(f"step.ai.infer {step!r}: {exc}", retry=False)
    return await _send(request, step)


def _request(opts: dict[str, Any]) -> _Request:
    """The HTTP request an op's opts describe (protocol §3.2, ``AIGateway``)."""
    url, key, fmt = opts.get("url"), opts.get("auth_key", ""), opts.get("format", "openai-chat")
    headers, body = opts.get("headers") or {}, opts.get("body")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise _Refused("the op has no http(s) url to send the request to")
    if not isinstance(key, str) or not isinstance(fmt, str):
        raise _Refused("auth_key and format must be strings")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise _Refused("headers must map strings to strings")
    if not isinstance(body, dict):
        raise _Refused("body must be a JSON object (the provider's request)")
    if fmt not in FORMATS:
        raise _Refused(f"format {fmt!r} is not supported (supported: {', '.join(FORMATS)})")
    if body.get("stream"):
        raise _Refused("streaming responses (body.stream) are not supported; drop 'stream'")
    if opts.get("auto_tool_call"):
        raise _Refused("auto_tool_call is not supported")
    sent = {"content-type": "application/json"}
    if fmt == "anthropic":
        sent["x-api-key"] = key
    elif fmt == "bedrock":
        sent["authorization"] = key  # an already signed AWS authorization value
    elif fmt == "gemini":
        url = _with_key_param(url, key)
    else:
        sent["authorization"] = f"Bearer {key}"
    # The op's own headers win over the defaults (a custom auth scheme, say).
    sent.update({k.lower(): v for k, v in headers.items()})
    return _Request(url, sent, orjson.dumps(body), key)


def _with_key_param(url: str, key: str) -> str:
    """Gemini takes the key as ``?key=``; the official adapters put it there already."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "key" for name, _ in query):
        return url
    return urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode([*query, ("key", key)]))
    )


async def _send(request: _Request, step: str) -> _Outcome:
    what = _scrub(f"step.ai.infer {step!r}: the request to {_where(request.url)}", request)
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    try:
        # A session per call: AI calls are few and slow, and nothing outlives the call.
        async with (
            aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as s,
            s.post(
                request.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                proxy=_proxy(request.url),
            ) as answer,
        ):
            body = await _read(answer)
            status, reason = answer.status, answer.reason or ""
            retry_text = answer.headers.get(h.RETRY_AFTER)
    except TimeoutError:
        return _failed(f"{what} got no answer within {CALL_TIMEOUT_S:.0f} s", retry=True)
    except _TooLarge:
        return _failed(f"{what} answered more than {MAX_RESPONSE_BYTES} bytes", retry=False)
    except (aiohttp.ClientError, OSError) as exc:
        detail = _scrub(f"{type(exc).__name__}: {exc}", request)
        return _failed(f"{what} failed: {detail}", retry=True)
    except Exception as exc:  # a request the client refuses to send (a header with a newline)
        detail = _scrub(f"{type(exc).__name__}: {exc}", request)
        return _failed(f"{what} could not be sent: {detail}", retry=False)
    if 200 <= status < 300:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            text = _scrub(_snippet(body), request)
            return _failed(
                f"{what} answered {status} with a body that is not JSON: {text}", retry=True
            )
        return _Outcome(data=body.strip())
    retry = status >= 500 or status in _RETRIED_4XX
    answered = _scrub(_snippet(body), request)
    outcome = _failed(
        f"{what} answered HTTP {status} {reason}".rstrip() + (f": {answered}" if answered else ""),
        retry=retry,
        data={"status": status, "body": _error_body(body, request)},
    )
    if retry and retry_text is not None:
        now = datetime.datetime.now(datetime.UTC)
        after = h.parse_retry_after(retry_text, now=now)
        outcome = dataclasses.replace(outcome, retry_after=after)
    return outcome


async def _read(answer: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _failed(message: str, retry: bool, data: Any = None) -> _Outcome:
    return _Outcome(error=ErrorPayload(name=_ERROR_NAME, message=message, data=data), retry=retry)


def _error_body(body: bytes, request: _Request) -> Any:
    """A provider's error body for the step's error (its JSON when it is small), with any
    echo of the key taken out."""
    if len(body) > 16 * 1024:
        return _scrub(_snippet(body), request)
    try:
        return orjson.loads(_scrub(body.decode("utf-8", "replace"), request))
    except orjson.JSONDecodeError:
        return _scrub(_snippet(body), request) or None


def _scrub(text: str, request: _Request) -> str:
    """``text`` without the key (a provider may echo it; a client error may quote the
    URL, which for Gemini carries it) and without the URL's query."""
    text = text.replace(request.url, _where(request.url))
    key = request.key
    if key:
        text = text.replace(key, _REDACTED)
        escaped = orjson.dumps(key)[1:-1].decode()
        text = text.replace(escaped, _REDACTED)
        text = text.replace(urllib.parse.quote(key, safe=""), _REDACTED)
    return text


def _where(url: str) -> str:
    """The URL without query or fragment, for messages."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def _snippet(body: bytes) -> str:
    text = " ".join(body[: _SNIPPET_CHARS * 4].decode("utf-8", "replace").split())
    return text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else "")


def _proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), as
    the executor's calls to apps take it."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy or None
