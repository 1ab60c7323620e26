"""The framework-neutral serve handler: an HTTP request in, an HTTP response out.

One URL serves an app (protocol §1.1): ``GET`` introspects, ``PUT`` syncs the app's
functions to the server, ``POST ?fnId=..&stepId=..`` runs a function against the memos in
the body (§2, §5) and answers 200 / 206 / 5xx (§3). Adapters (ASGI, Flask, Django) only
translate their framework's request and response objects.

Each run's :class:`~mainspring.sdk.execution.Execution` is kept suspended between its
calls (:class:`~mainspring.sdk.live.LiveExecutions`): the next call continues where the
last stopped, and a targeted call of a parallel group runs its step without replaying the
group. Another worker may take any call, and a call that does not fit what the kept
execution waits on gets a fresh one that replays from the memos in the request, so the
request stays the source of truth. When the executor is Mainspring's
(``x-mainspring-chain-seconds``), a call that runs a lone step goes on to the steps that
follow it, within that budget, and answers them all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import orjson

from mainspring.protocol import headers as h
from mainspring.protocol import signing, wire
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.consts import REQUEST_VERSION
from mainspring.protocol.messages import CallRequest
from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.live import LiveExecutions
from mainspring.sdk.serve.threads import step_executor
from mainspring.sdk.serve.urls import DEFAULT_SERVE_PATH as DEFAULT_SERVE_PATH
from mainspring.sdk.serve.urls import ServeLocation

SDK_VERSION = "0.1.0"
SDK_HEADER = f"mainspring:v{SDK_VERSION}"
SCHEMA_VERSION = "2024-05-24"


@dataclasses.dataclass(frozen=True, slots=True)
class ServeRequest:
    """What an adapter hands over: method, full URL, lowercase headers, raw body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    #: The framework's own request object, handed to middleware (``raw_request``).
    raw: object = None


@dataclasses.dataclass(frozen=True, slots=True)
class ServeResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class ServeHandler:
    """Answers the executor (and sync/introspection calls) for one client's functions."""

    def __init__(
        self,
        client: Client,
        functions: Iterable[Function[Any]],
        *,
        framework: str = "asgi",
        serve_origin: str | None = None,
        serve_path: str | None = None,
        public_path: str | None = None,
        enable_unauthed_sync: bool | None = None,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
        keep_executions: bool = True,
        max_live: int = 1024,
        max_live_sync: int = 32,
        max_idle_seconds: float = 300.0,
    ) -> None:
        self.client = client
        self.settings = client.settings
        self.framework = framework
        self.functions: dict[str, Function[Any]] = {}
        for function in functions:
            for fn in function.with_failure_handler():
                self.functions[fn.id] = fn
        self.serve_origin = serve_origin or self.settings.serve_origin
        self.serve_path = serve_path or self.settings.serve_path
        self.location = ServeLocation(self.serve_origin, self.serve_path, public_path)
        # Dev mode never checks signatures, so there is nothing to refuse an unsigned sync on.
        self.enable_unauthed_sync = self.settings.dev or (
            self.settings.enable_unauthed_sync
            if enable_unauthed_sync is None
            else enable_unauthed_sync
        )
        self._clock = clock
        self._http = http
        # Off for adapters that run each request on an event loop of its own (Flask).
        self._live = LiveExecutions(
            client,
            max_live=max_live,
            max_live_sync=max_live_sync,
            keep=keep_executions,
            max_idle_seconds=max_idle_seconds,
            step_executor=step_executor(self.settings.thread_pool_max_workers),
        )

    # -- dispatch ----------------------------------------------------------------------

    async def handle(self, request: ServeRequest) -> ServeResponse:
        method = request.method.upper()
        if method == "GET":
            return self._introspect(request)
        if method == "PUT":
            return await self._sync(request)
        if method == "POST":
            return await self._execute(request)
        return self._error(405, "method_not_allowed", f"{method} is not served here")

    def headers(self) -> dict[str, str]:
        """The headers every answer carries (a streamed answer's 201 too)."""
        return self._headers()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "x-inngest-sdk": SDK_HEADER,
            "x-inngest-req-version": str(REQUEST_VERSION),
            "x-inngest-framework": self.framework,
            "x-inngest-expected-server-kind": "dev" if self.settings.dev else "cloud",
        }
        if extra:
            headers.update(extra)
        return headers

    def _error(self, status: int, code: str, message: str, *, retry: bool = False) -> ServeResponse:
        body = orjson.dumps({"code": code, "name": "ServeError", "message": message})
        no_retry = {"x-inngest-no-retry": "false" if retry else "true"}
        return ServeResponse(status, self._headers(no_retry), body)

    def _keys(self) -> list[str]:
        return [k for k in (self.settings.signing_key, self.settings.signing_key_fallback) if k]

    def _signature_ok(self, request: ServeRequest) -> bool | None:
        """None when unsigned, else whether the signature verifies with our keys."""
        header = request.headers.get("x-inngest-signature")
        if not header:
            return None
        try:
            signing.verify(header, request.body, self._keys(), now=int(self._clock()))
        except signing.SignatureError:
            return False
        return True

    # -- GET: introspection (§1.5) -----------------------------------------------------

    def _introspect(self, request: ServeRequest) -> ServeResponse:
        settings = self.settings
        signed = None if settings.dev else self._signature_ok(request)
        body: dict[str, Any] = {
            "authentication_succeeded": signed,
            "function_count": len(self.functions),
            "has_event_key": settings.event_key is not None,
            "has_signing_key": settings.signing_key is not None,
            "has_signing_key_fallback": settings.signing_key_fallback is not None,
            "mode": "dev" if settings.dev else "cloud",
            "schema_version": SCHEMA_VERSION,
        }
        if signed:
            origin, path = self._serve_url_parts(request)
            body.update(
                {
                    "api_origin": settings.api_origin,
                    "app_id": self.client.app_id,
                    "env": settings.env,
                    "event_api_origin": settings.event_api_origin,
                    "event_key_hash": _sha256(settings.event_key),
                    "framework": self.framework,
                    "sdk_language": "py",
                    "sdk_version": SDK_VERSION,
                    "serve_origin": origin,
                    "serve_path": path,
                    "signing_key_hash": _key_hash(settings.signing_key),
                    "signing_key_fallback_hash": _key_hash(settings.signing_key_fallback),
                }
            )
        return ServeResponse(200, self._headers(), orjson.dumps(body))

    # -- PUT: sync (§1.2-§1.4) ---------------------------------------------------------

    def _serve_url_parts(self, request: ServeRequest) -> tuple[str, str]:
        return self.location.origin_and_path(request.url)

    def serve_url(self, request: ServeRequest) -> str:
        """The URL this app registers: see :mod:`.urls` for the options that move it."""
        return self.location.url(request.url)

    def registration(self, url: str) -> dict[str, Any]:
        """The body of ``POST /fn/register`` for this app served at ``url``."""
        return {
            "url": url,
            "deployType": "ping",
            "appName": self.client.app_id,
            "appVersion": self.client.app_version,
            "sdk": f"py:v{SDK_VERSION}",
            "v": "0.1",
            "framework": self.framework,
            "functions": [fn.config.to_wire(url) for fn in self.functions.values()],
            "capabilities": {"trust_probe": "v1"},
        }

    async def _sync(self, request: ServeRequest) -> ServeResponse:
        kind = request.headers.get("x-inngest-server-kind")
        mode = "dev" if self.settings.dev else "cloud"
        if kind and kind != mode:
            return self._error(400, "server_kind_mismatch", _kind_mismatch(kind, mode))
        if not self.enable_unauthed_sync and not self._signature_ok(request):
            return self._error(401, "sig_verification_failed", _UNAUTHED_SYNC_OFF)
        body = self.registration(self.serve_url(request))
        body = {k: v for k, v in body.items() if v is not None}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
        params = {"deployId": query["deployId"][0]} if "deployId" in query else None
        headers = self._headers()
        if kind:
            headers["x-inngest-expected-server-kind"] = kind
        if self.settings.signing_key:
            headers["authorization"] = f"Bearer {signing.hashed_key(self.settings.signing_key)}"
        http = self._http or httpx.AsyncClient(timeout=10.0)
        try:
            answer = await http.post(
                f"{self.settings.api_origin}/fn/register",
                content=orjson.dumps(body),
                headers=headers,
                params=params,
            )
        except httpx.HTTPError as exc:
            return self._error(500, "sync_failed", f"could not reach the server to sync: {exc}")
        finally:
            if self._http is None:
                await http.aclose()
        reply_headers = self._headers({"x-inngest-sync-kind": "out_of_band"})
        return ServeResponse(answer.status_code, reply_headers, answer.content)

    # -- POST: execution (§2, §3, §5) --------------------------------------------------

    async def _execute(self, request: ServeRequest) -> ServeResponse:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        signed = False
        if not self.settings.dev:
            if not self._keys():
                return self._error(500, "signing_key_missing", "no signing key is configured")
            verdict = self._signature_ok(request)
            if not verdict:
                missing = "missing" if verdict is None else "invalid"
                return self._error(401, "sig_verification_failed", f"the signature is {missing}")
            signed = True
        if query.get("probe") == "trust":
            return self._finish(ServeResponse(200, self._headers(), b""), signed)
        fn_id = query.get("fnId")
        if not fn_id:
            return self._error(400, "missing_fn_id", "the fnId query parameter is required")
        function = self.functions.get(fn_id) or self.functions.get(f"{self.client.app_id}-{fn_id}")
        if function is None:
            return self._error(
                500,
                ErrorCode.FUNCTION_NOT_FOUND,
                f"no function {fn_id!r} in app {self.client.app_id!r}",
            )
        step_id = query.get("stepId", "step")
        try:
            call = wire.request_from_wire(
                request.body, fn_id=function.id, step_id=None if step_id == "step" else step_id
            )
        except wire.WireError as exc:
            return self._error(400, "malformed_request", str(exc))
        # ctx.job_id / ctx.request_id: the reference's server sends them as headers.
        call.ctx.job_id = request.headers.get(h.JOB_ID) or call.ctx.job_id
        call.ctx.request_id = request.headers.get(h.REQUEST_ID) or call.ctx.request_id
        if call.ctx.use_api:
            try:
                call = await self._fetch_state(call)
            except (httpx.HTTPError, ValueError) as exc:
                return self._error(500, "state_fetch_failed", str(exc), retry=True)
        chain = h.parse_chain_seconds(request.headers.get(h.CHAIN_SECONDS))
        response = await self._live.call(
            function,
            call,
            report_completion=chain is not None,
            chain_seconds=chain,
            parallel_plans=chain is not None and bool(request.headers.get(h.PARALLEL_PLANS)),
            # A run whose state came through the API is large: not worth holding on to.
            keep=not call.ctx.use_api,
            raw_request=request.raw,
        )
        reply = wire.response_to_http(response)
        return self._finish(
            ServeResponse(reply.status, self._headers(reply.headers), reply.body), signed
        )

    def _finish(self, response: ServeResponse, signed: bool) -> ServeResponse:
        if signed and self.settings.signing_key:
            response.headers["x-inngest-signature"] = signing.sign(
                response.body, self.settings.signing_key, at=int(self._clock())
            )
        return response

    async def _fetch_state(self, call: CallRequest) -> CallRequest:
        """Large runs come without state (``use_api``, §2.4): fetch events and memos."""
        headers = {"x-inngest-sdk": SDK_HEADER}
        if self.settings.signing_key:
            headers["authorization"] = f"Bearer {signing.hashed_key(self.settings.signing_key)}"
        base = f"{self.settings.api_origin}/v0/runs/{call.ctx.run_id}"
        http = self._http or httpx.AsyncClient(timeout=30.0)
        try:
            batch = await http.get(f"{base}/batch", headers=headers)
            actions = await http.get(f"{base}/actions", headers=headers)
        finally:
            if self._http is None:
                await http.aclose()
        if batch.status_code != 200 or actions.status_code != 200:
            raise ValueError(
                f"fetching the run's state failed: {batch.status_code} / {actions.status_code}"
            )
        events = orjson.loads(batch.content)
        steps = orjson.loads(actions.content)
        if not isinstance(events, list) or not events or not isinstance(steps, dict):
            raise ValueError("the run's state came back in an unexpected shape")
        return dataclasses.replace(call, event=events[0], events=events, steps=steps)


def _sha256(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def _key_hash(key: str | None) -> str | None:
    if key is None:
        return None
    body = signing.strip_prefix(key)
    try:
        return hashlib.sha256(bytes.fromhex(body)).hexdigest()
    except ValueError:
        return None


_UNAUTHED_SYNC_OFF = (
    "unsigned sync refused: enable_unauthed_sync is off (or INNGEST_ENABLE_UNAUTHED_SYNC is "
    "false), so a sync must carry a valid x-inngest-signature"
)


def _kind_mismatch(server: str, app: str) -> str:
    """A refused sync, naming the fix (the server's side says the same: server/kind_hints)."""
    said = f"the server is in {server} mode, this app in {app} mode"
    if app == "cloud":
        return (
            f"{said}: to use a dev server (mainspring dev), set INNGEST_DEV=1 in this app's "
            "environment, or create its client with is_production=False "
            "(mainspring.Client(..., is_production=False))"
        )
    return (
        f"{said}: to use this server, unset INNGEST_DEV in this app's environment, or create "
        "its client with is_production=True and its signing key"
    )
