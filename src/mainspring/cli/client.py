"""The CLI's HTTP client for a running server (``mainspring dev`` or ``start``).

Where: ``--url``, else ``MAINSPRING_URL``, ``INNGEST_BASE_URL``, ``INNGEST_DEV`` when it
holds a URL, else http://127.0.0.1:8288. With which key: ``--signing-key``, else
``INNGEST_SIGNING_KEY``, sent hashed as the SDKs send it (``Authorization: Bearer``,
protocol §9); ``dev`` needs none. Every failure is a :class:`CliError`: one line for the
user, never a traceback.

Requests go through the standard library's :mod:`http.client` on one keep-alive
connection, not httpx: httpx and httpcore take ~150 ms to import, more than the rest of a
client command together, and a command sends a handful of small requests to one server.
Bodies are small: the standard :mod:`json` reads and writes them (orjson's import alone
costs ~15 ms).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from mainspring.protocol import signing

DEFAULT_URL = "http://127.0.0.1:8288"
#: Seconds to wait for the server to answer (no byte for that long): it answers listings
#: quickly, and bulk work is split into one request per run.
TIMEOUT_S = 60.0


class CliError(Exception):
    """What went wrong, said in one line; the command exits with ``code``. ``status``: the
    HTTP status when the server refused the request (None when it was not reached)."""

    def __init__(self, message: str, code: int = 1, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: status, reason phrase, body."""

    status: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


#: Sends one request, ``(method, target, headers, body)`` where the target is the path and
#: query, and returns the answer; raises :class:`OSError` when the server cannot be reached
#: or does not answer. Tests pass a function of their own.
Transport = Callable[[str, str, Mapping[str, str], bytes | None], Answer]


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def server_url(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The server's origin, from the option or the environment (see the module doc)."""
    environ = os.environ if environ is None else environ
    candidates = [
        option,
        environ.get("MAINSPRING_URL"),
        environ.get("INNGEST_BASE_URL"),
        environ.get("INNGEST_DEV") if _is_url(environ.get("INNGEST_DEV", "")) else None,
    ]
    url = next((value for value in candidates if value), DEFAULT_URL)
    if not _is_url(url):
        raise CliError(f"--url: expected an http:// or https:// URL, got {url!r}", code=2)
    try:
        _ = urlsplit(url).port  # a malformed port raises here, not at the first request
    except ValueError as exc:
        raise CliError(f"--url: {exc}: {url!r}", code=2) from None
    return url.rstrip("/")


def bearer(option: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The ``Authorization`` header for the signing key, if one is given."""
    environ = os.environ if environ is None else environ
    key = option if option is not None else environ.get("INNGEST_SIGNING_KEY")
    if not key:
        return None
    try:
        return f"Bearer {signing.hashed_key(key)}"
    except (signing.SigningKeyError, ValueError) as exc:
        source = "--signing-key" if option is not None else "INNGEST_SIGNING_KEY"
        raise CliError(f"{source}: expected {signing.SIGNING_KEY_FORM}: {exc}", code=2) from None


class Connection:
    """One keep-alive connection to ``url``'s host: the default :data:`Transport`.

    A connection the server closed while it sat idle (its keep-alive timeout) fails on
    reuse before the request is read; that request is sent again once, on a new connection.
    """

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                import ssl  # only for https: it costs ~10 ms to import

                self._conn = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self._timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            self._used = False
        return self._conn

    def __call__(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        for attempt in (1, 2):
            conn = self._connect()
            reused = self._used
            try:
                conn.request(method, self._prefix + target, body=body, headers=dict(headers))
                response = conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 1:
                    continue  # a stale keep-alive connection: the server read nothing
                raise
            except BaseException:
                self.close()
                raise
            self._used = True
            if response.will_close:
                self.close()
            return Answer(response.status, response.reason or "", content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Server:
    """Requests to one server; answers are the decoded JSON bodies."""

    def __init__(
        self,
        url: str,
        authorization: str | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self._authorization = authorization
        self._headers = {"user-agent": "mainspring-cli", "accept": "application/json"}
        if authorization is not None:
            self._headers["authorization"] = authorization
        self._transport = transport
        self._connection = None
        if transport is None:
            self._connection = transport = Connection(url)
        self._send: Transport = transport

    def clone(self) -> Server:
        """Another client of the same server with a connection of its own (one per
        thread: a connection carries one request at a time)."""
        return Server(self.url, self._authorization, transport=self._transport)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> Any:
        if content is None:
            content = _dumps({} if body is None else body)
        return self.request("POST", path, content=content)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def graphql(self, query: str, variables: Mapping[str, Any]) -> Any:
        """The ``data`` of a GraphQL answer; its first error as a :class:`CliError`."""
        answer = self.post("/v0/gql", {"query": query, "variables": dict(variables)})
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            first = errors[0]
            message = first.get("message") if isinstance(first, dict) else first
            raise CliError(f"the server's GraphQL API answered: {message}")
        return answer.get("data") if isinstance(answer, dict) else None

    def request(
        self, method: str, path: str, *, params: Any = None, content: bytes | None = None
    ) -> Any:
        """The decoded body of the answer; a :class:`CliError` for a refusal (4xx, 5xx)
        or a server that cannot be reached. ``params``: a mapping whose values may be
        lists (a repeated parameter)."""
        target = f"{path}?{urlencode(params, doseq=True)}" if params else path
        headers = dict(self._headers)
        if content is not None:
            headers["content-type"] = "application/json"
        try:
            answer = self._send(method, target, headers, content)
        except TimeoutError:
            raise CliError(
                f"the mainspring server at {self.url} did not answer {method} {path} in "
                f"{TIMEOUT_S:.0f} s"
            ) from None
        except OSError as exc:  # RemoteDisconnected too: it is a ConnectionResetError
            raise CliError(
                f"cannot reach the mainspring server at {self.url} ({_reason(exc)}): is it "
                "running? Start one with `mainspring dev`, or point --url (or "
                "MAINSPRING_URL) at it"
            ) from None
        except http.client.HTTPException as exc:
            raise CliError(
                f"the server at {self.url} sent a malformed answer to {method} {path} "
                f"({type(exc).__name__}): is it a mainspring server?"
            ) from None
        try:
            data = json.loads(answer.content) if answer.content else None
        except ValueError:
            data = None
        if answer.status >= 400:
            refusal = _refusal(answer, data, path)
            raise CliError(f"{method} {path}: {refusal}", status=answer.status)
        return data


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the server's own answers are written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).strip()
    if not text or len(text) > 120:
        return type(exc).__name__
    return text


def _refusal(answer: Answer, data: Any, path: str) -> str:
    """The status and the server's own message (``{"error": ...}``)."""
    status = f"{answer.status} {answer.reason}".strip()
    message = None
    if isinstance(data, dict):
        message = data.get("error") or data.get("message") or data.get("detail")
    if message is None:
        text = answer.text.strip()
        message = text[:200] if text and not text.startswith("<") else None
    if answer.status == 401:
        key = ("--event-key", "INNGEST_EVENT_KEY") if path.startswith("/e/") else None
        key = key or ("--signing-key", "INNGEST_SIGNING_KEY")
        hint = f" (pass {key[0]} or set {key[1]})"
        return f"{status}: {message or 'unauthorized'}{hint}"
    if answer.status == 404 and message in (None, "Not Found"):
        return f"{status}: this server has no such route (is it an older mainspring?)"
    if message is None:
        return status
    return f"{status}: {' '.join(str(message).split())}"
