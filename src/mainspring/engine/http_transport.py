"""Calling functions over HTTP (protocol §2-§3): the executor side of the serve endpoint.

Each call POSTs the call body to the app's URL with ``fnId`` and ``stepId`` and turns the
answer into a call response. A signed call's body is JCS-canonical, as the SDK checks the
signature of the canonical form; an unsigned one is plain compact JSON of the same values.
Anything that is not an SDK's answer (a refused connection, a timeout, garbage, no
``X-Inngest-SDK``) becomes a retriable failed attempt whose message says what went wrong.

The HTTP client sits behind :class:`CallClient`, one ``post`` and a ``close``:

- :class:`AiohttpCallClient`, the default: aiohttp's keep-alive pool, one per engine,
  as large as the engine's concurrency. A call costs about a quarter of what it costs
  through httpx, whose pool is also scanned on every request (quadratic when hundreds of
  calls are in flight);
- :class:`HttpxCallClient` around an ``httpx.AsyncClient`` that the caller passes (tests
  route calls to an ASGI app in memory that way).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import errno
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import httpx

from mainspring.protocol import headers as h
from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallRequest, CallResponse, ErrorPayload, Failure
from mainspring.protocol.step_ids import DISCOVERY_STEP_ID

#: The reference executor's ceiling for one call.
DEFAULT_TIMEOUT_S = 2 * 3600.0

#: Connections the default client keeps to all apps together when no engine sizes it.
DEFAULT_MAX_CONNECTIONS = 256

#: An idle connection is dropped after this long, before the app's server closes it (uvicorn
#: and Node close after 5 s): a call must not be sent on a connection being closed.
KEEPALIVE_S = 4.0

#: How much of a non-SDK answer's body an error message quotes (an HTML error page is long).
_SNIPPET_CHARS = 200

#: Larger bodies go without state: the SDK fetches it from the API (``use_api``, §2.4).
MAX_BODY_BYTES = 4 * 1024 * 1024 - 1024


def _url_prefix(app_url: str) -> str:
    """The app URL without ``fnId``/``stepId``, ready for them to be appended."""
    parts = urllib.parse.urlsplit(app_url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    kept = urllib.parse.urlencode(query)
    return urllib.parse.urlunsplit(parts._replace(query="")) + (f"?{kept}&" if kept else "?")


def _target_query(fn_id: str, step_id: str | None) -> str:
    return urllib.parse.urlencode([("fnId", fn_id), ("stepId", step_id or DISCOVERY_STEP_ID)])


def _where(url: str) -> str:
    """The URL without its query, for error messages: the query may carry an app's auth
    parameters (protocol §1.3), and messages are stored on the run and shown in the API."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def _snippet(body: bytes) -> str:
    text = body[: _SNIPPET_CHARS * 4].decode("utf-8", "replace").strip()
    text = " ".join(text.split())  # one line, however the page was laid out
    return text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else "")


# -- the HTTP clients ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """An app's HTTP answer (``headers`` looked up case-insensitively by the callers)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class CallFailed(Exception):
    """No HTTP answer; the message says why, in words an operator can act on."""


class CallClient(Protocol):
    """What the transport needs of an HTTP client."""

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Answer:
        """POST ``body``; the answer, or :class:`CallFailed` when there is none.

        ``timeout`` bounds the whole exchange; the caller also enforces it.
        """
        ...

    async def close(self) -> None: ...


def _root_os_error(exc: BaseException) -> OSError | None:
    """The socket error under a client's error: httpx reports a refused loopback connection
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


def _no_connection(root: OSError | None, where: str, fallback: str) -> str:
    # Several addresses refused at once (``localhost``: ::1 and 127.0.0.1) come as one
    # plain OSError that carries the errno.
    if isinstance(root, ConnectionRefusedError) or (root and root.errno == errno.ECONNREFUSED):
        return f"connection refused by {where}: is the app running?"
    reason = (root.strerror or str(root)) if root is not None else fallback
    return f"could not connect to {where}: {reason}"


def _timed_out(timeout: float, phase: str, where: str) -> str:
    return f"timed out after {timeout:g} s {phase} ({where})"


def _describe_httpx_error(exc: Exception, where: str, timeout: float) -> str:
    """Why an httpx call got no answer."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        if isinstance(exc, httpx.ConnectTimeout):
            phase = "connecting"
        elif isinstance(exc, httpx.WriteTimeout):
            phase = "sending the request"
        elif isinstance(exc, httpx.PoolTimeout):
            phase = "waiting for a free connection"
        else:
            phase = "waiting for the answer"
        return _timed_out(timeout, phase, where)
    if isinstance(exc, httpx.ConnectError):
        return _no_connection(_root_os_error(exc), where, str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where} did not answer with valid HTTP: {exc}"
    return f"calling {where} failed: {type(exc).__name__}: {exc}"


def _describe_aiohttp_error(exc: Exception, where: str, timeout: float) -> str:
    """Why an aiohttp call got no answer."""
    if isinstance(exc, TimeoutError):  # aiohttp's own timeouts are TimeoutErrors too
        phase = (
            "connecting"
            if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else "waiting for the answer"
        )
        return _timed_out(timeout, phase, where)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _no_connection(exc.os_error, where, str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return f"{where} did not answer with valid HTTP: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # The response parser's complaint ("Bad status line ...", laid out on several
        # lines); str(exc) names the URL with its query, which messages must not.
        return f"{where} did not answer with valid HTTP: {' '.join(exc.message.split())}"
    return f"calling {where} failed: {type(exc).__name__}: {exc}"


def _without_query(message: str, url: str, where: str) -> str:
    return message.replace(url, where) if url != where else message


class HttpxCallClient:
    """A :class:`CallClient` over an ``httpx.AsyncClient``; closes it only if ``own``."""

    def __init__(self, http: httpx.AsyncClient, *, own: bool = False) -> None:
        self.http = http
        self._own = own

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Answer:
        try:
            # httpx's timeout is per read (and overrides the client's own default); the
            # caller's deadline also stops an app that trickles bytes forever.
            answer = await self.http.post(url, content=body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            message = _describe_httpx_error(exc, _where(url), timeout)
            raise CallFailed(_without_query(message, url, _where(url))) from exc
        return Answer(answer.status_code, answer.headers, answer.content)

    async def close(self) -> None:
        if self._own:
            await self.http.aclose()


class AiohttpCallClient:
    """The default :class:`CallClient`: one aiohttp session with a keep-alive pool of up
    to ``max_connections`` connections to all apps together.

    The session is made on the first call, in the running event loop, and made anew after
    :meth:`close` (an engine may be stopped and started again, in another loop). Proxies
    come from the environment as httpx takes them (``HTTP_PROXY``, ``NO_PROXY``...), read
    once per app URL rather than on every call as aiohttp's ``trust_env`` would. Cookies
    are not kept: each call stands alone.
    """

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, keepalive_timeout=KEEPALIVE_S
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                # No timer of aiohttp's own (its default gives up after 5 min): the
                # caller bounds each call.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=None),
            )
        return session

    def _proxy(self, url: str) -> str | None:
        origin = url.partition("?")[0]
        if origin not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            proxies = urllib.request.getproxies()
            proxy = proxies.get(parts.scheme) or proxies.get("all")
            if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
                proxy = None
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        # Connecting is timed by aiohttp too, only so that a message can name that phase.
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, sock_connect=seconds
            )
        return found

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Answer:
        session = self._open()
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy(url),
                timeout=self._timeout(timeout),
            ) as answer:
                content = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = _describe_aiohttp_error(exc, _where(url), timeout)
            raise CallFailed(_without_query(message, url, _where(url))) from exc
        return Answer(answer.status, answer.headers, content)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


# -- the transport -------------------------------------------------------------------------


class HttpTransport:
    """Calls one app's serve endpoint.

    ``http`` is the client to use: an ``httpx.AsyncClient`` or a :class:`CallClient`,
    neither closed here; without one, the transport makes (and closes) an
    :class:`AiohttpCallClient` of ``max_connections``. An engine passes one client to all
    its transports.

    ``timeout`` bounds each call end to end (connecting, sending, waiting, reading), also
    when ``http`` is a shared client with a shorter default of its own: a step may rightly
    run for minutes, and an app that hangs must still give the attempt back to the engine.
    """

    def __init__(
        self,
        app_url: str,
        *,
        signing_key: str | None = None,
        http: httpx.AsyncClient | CallClient | None = None,
        timeout: float | None = None,
        chain_seconds: float | None = None,
        parallel_plans: bool = True,
        clock: Callable[[], float] = time.time,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.app_url = app_url
        # Parsed once: every step's call only appends its function and step.
        self._url_prefix = _url_prefix(app_url)
        self._where = _where(app_url)
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self._key = signing_key
        self._own_http = http is None
        self._http: CallClient
        if http is None:
            self._http = AiohttpCallClient(max_connections=max_connections)
        elif isinstance(http, httpx.AsyncClient):
            self._http = HttpxCallClient(http)
        else:
            self._http = http
        self._clock = clock
        #: Sent with every call: our SDK may then answer several sequential steps at once.
        self._chain = f"{chain_seconds:g}" if chain_seconds else None
        #: Sent with the chain's header: our SDK may then run a parallel plan in one call.
        self._parallel_plans = parallel_plans and self._chain is not None

    def _body(self, request: CallRequest) -> bytes:
        # Canonical only when signed: the SDK re-canonicalises a body just to check its
        # signature, and plain orjson is many times cheaper than RFC 8785.
        canonical = bool(self._key)
        body = wire.request_to_wire(request, canonical=canonical)
        if len(body) > MAX_BODY_BYTES:
            lean = dataclasses.replace(
                request,
                events=[],
                steps={},
                ctx=dataclasses.replace(request.ctx, use_api=True),
            )
            body = wire.request_to_wire(lean, canonical=canonical)
        return body

    async def call(self, request: CallRequest) -> CallResponse:
        body = self._body(request)
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
            if self._parallel_plans and request.plans_allowed:
                headers[h.PARALLEL_PLANS] = "1"
        if self._key:
            headers["x-inngest-signature"] = signing.sign(body, self._key, at=int(self._clock()))
        url = self._url_prefix + _target_query(request.fn_id, request.step_id)
        try:
            # The client's own timers may be per read; this deadline also stops an app
            # that trickles bytes forever.
            async with asyncio.timeout(self.timeout):
                answer = await self._http.post(url, body, headers, timeout=self.timeout)
        except CallFailed as exc:
            return _failed(str(exc))
        except TimeoutError:
            return _failed(_timed_out(self.timeout, "waiting for the answer", self._where))
        return _response(answer, self._where)

    def forget(self, run_id: str) -> None:
        """Nothing is kept per run over HTTP."""

    async def close(self) -> None:
        if self._own_http:
            await self._http.close()


def _response(answer: Answer, where: str) -> CallResponse:
    """The call response in an app's answer, or a failure saying what answered instead."""
    try:
        response = wire.response_from_http(
            answer.status,
            answer.headers,
            answer.body,
            now=datetime.datetime.now(datetime.UTC),
        )
    except wire.WireError as exc:
        status = answer.status
        if not answer.headers.get(h.SDK) and status != 201:
            # Not an SDK at all (a proxy, a wrong path, a crashed framework): the body
            # is what tells an operator what answered instead.
            return _failed(
                f"{where} answered HTTP {status} without the X-Inngest-SDK header "
                f"(not an Inngest SDK); body: {_snippet(answer.body)!r}"
            )
        return _failed(f"{where} answered HTTP {status} with an invalid body: {exc}")
    if isinstance(response, Failure) and not response.error.message:
        # An error body of `{}` (or only a name): the run's error must still say what
        # happened and where.
        response.error.message = f"{where} answered HTTP {answer.status}"
    return response


def _failed(message: str) -> Failure:
    return Failure(ErrorPayload(name="TransportError", message=message), retriable=True)
