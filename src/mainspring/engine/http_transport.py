"""Calling functions over HTTP (protocol §2-§3): the executor side of the serve endpoint.

Each call POSTs the JCS-canonical body to the app's URL with ``fnId`` and ``stepId``,
signed when a signing key is set, and turns the answer into a call response. Anything that
is not an SDK's answer (a refused connection, a timeout, garbage, no ``X-Inngest-SDK``)
becomes a retriable failed attempt whose message says what went wrong.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
import urllib.parse
from collections.abc import Callable

import httpx

from mainspring.protocol import headers as h
from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallRequest, CallResponse, ErrorPayload, Failure
from mainspring.protocol.step_ids import DISCOVERY_STEP_ID

#: The reference executor's ceiling for one call.
DEFAULT_TIMEOUT_S = 2 * 3600.0

#: How much of a non-SDK answer's body an error message quotes (an HTML error page is long).
_SNIPPET_CHARS = 200

#: Larger bodies go without state: the SDK fetches it from the API (``use_api``, §2.4).
MAX_BODY_BYTES = 4 * 1024 * 1024 - 1024


def call_url(app_url: str, fn_id: str, step_id: str | None) -> str:
    """The app URL with ``fnId`` and ``stepId`` set (other query parameters kept)."""
    parts = urllib.parse.urlsplit(app_url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", fn_id), ("stepId", step_id or DISCOVERY_STEP_ID)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _where(url: str) -> str:
    """The URL without its query, for error messages: the query may carry an app's auth
    parameters (protocol §1.3), and messages are stored on the run and shown in the API."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def _snippet(body: bytes) -> str:
    text = body[: _SNIPPET_CHARS * 4].decode("utf-8", "replace").strip()
    text = " ".join(text.split())  # one line, however the page was laid out
    return text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else "")


def _root_os_error(exc: BaseException) -> OSError | None:
    """The socket error under an httpx error: httpx reports a refused loopback connection
    as "All connection attempts failed", which names neither the cause nor the fix."""
    seen: set[int] = set()
    found: OSError | None = None
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError):
            found = cause
        cause = cause.__cause__ or cause.__context__
    return found


def _describe_http_error(exc: Exception, where: str, timeout: float) -> str:
    """Why a call got no answer, in words an operator can act on."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        if isinstance(exc, httpx.ConnectTimeout):
            phase = "connecting"
        elif isinstance(exc, httpx.WriteTimeout):
            phase = "sending the request"
        elif isinstance(exc, httpx.PoolTimeout):
            phase = "waiting for a free connection"
        else:
            phase = "waiting for the answer"
        return f"timed out after {timeout:g} s {phase} ({where})"
    if isinstance(exc, httpx.ConnectError):
        root = _root_os_error(exc)
        if isinstance(root, ConnectionRefusedError):
            return f"connection refused by {where}: is the app running?"
        reason = (root.strerror or str(root)) if root is not None else str(exc)
        return f"could not connect to {where}: {reason or type(exc).__name__}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where} did not answer with valid HTTP: {exc}"
    return f"calling {where} failed: {type(exc).__name__}: {exc}"


class HttpTransport:
    """Calls one app's serve endpoint.

    ``timeout`` bounds each call end to end (connecting, sending, waiting, reading), also
    when ``http`` is a shared client with a shorter default of its own: a step may rightly
    run for minutes, and an app that hangs must still give the attempt back to the engine.
    """

    def __init__(
        self,
        app_url: str,
        *,
        signing_key: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float | None = None,
        chain_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_url = app_url
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self._key = signing_key
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=self.timeout)
        self._clock = clock
        #: Sent with every call: our SDK may then answer several sequential steps at once.
        self._chain = f"{chain_seconds:g}" if chain_seconds else None

    async def call(self, request: CallRequest) -> CallResponse:
        body = wire.request_to_wire(request)
        if len(body) > MAX_BODY_BYTES:
            lean = dataclasses.replace(
                request,
                events=[],
                steps={},
                ctx=dataclasses.replace(request.ctx, use_api=True),
            )
            body = wire.request_to_wire(lean)
        headers = {
            "content-type": "application/json",
            "x-inngest-step-id": request.step_id or DISCOVERY_STEP_ID,
            "x-run-id": request.ctx.run_id,
            "x-inngest-job-id": request.ctx.job_id,
            "x-request-id": request.ctx.request_id,
            "x-inngest-req-version": str(request.version),
            "user-agent": "mainspring",
        }
        if self._chain is not None:
            headers[h.CHAIN_SECONDS] = self._chain
        if self._key:
            headers["x-inngest-signature"] = signing.sign(body, self._key, at=int(self._clock()))
        url = call_url(self.app_url, request.fn_id, request.step_id)
        try:
            # httpx's timeout is per read; the outer deadline also stops an app that
            # trickles bytes forever.
            async with asyncio.timeout(self.timeout):
                answer = await self._http.post(
                    url, content=body, headers=headers, timeout=self.timeout
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            return _failed(_describe_http_error(exc, _where(url), self.timeout))
        try:
            response = wire.response_from_http(
                answer.status_code,
                dict(answer.headers),
                answer.content,
                now=datetime.datetime.now(datetime.UTC),
            )
        except wire.WireError as exc:
            status, where = answer.status_code, _where(url)
            if not answer.headers.get(h.SDK) and status != 201:
                # Not an SDK at all (a proxy, a wrong path, a crashed framework): the body
                # is what tells an operator what answered instead.
                return _failed(
                    f"{where} answered HTTP {status} without the X-Inngest-SDK header "
                    f"(not an Inngest SDK); body: {_snippet(answer.content)!r}"
                )
            return _failed(f"{where} answered HTTP {status} with an invalid body: {exc}")
        if isinstance(response, Failure) and not response.error.message:
            # An error body of `{}` (or only a name): the run's error must still say what
            # happened and where.
            response.error.message = f"{_where(url)} answered HTTP {answer.status_code}"
        return response

    def forget(self, run_id: str) -> None:
        """Nothing is kept per run over HTTP."""

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()


def _failed(message: str) -> Failure:
    return Failure(ErrorPayload(name="TransportError", message=message), retriable=True)
