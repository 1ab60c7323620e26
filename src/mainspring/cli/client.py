"""The CLI's HTTP client for a running server (``mainspring dev`` or ``start``).

Where: ``--url``, else ``MAINSPRING_URL``, ``INNGEST_BASE_URL``, ``INNGEST_DEV`` when it
holds a URL, else http://127.0.0.1:8288. With which key: ``--signing-key``, else
``INNGEST_SIGNING_KEY``, sent hashed as the SDKs send it (``Authorization: Bearer``,
protocol §9); ``dev`` needs none. Every failure is a :class:`CliError`: one line for the
user, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from mainspring.protocol import signing

DEFAULT_URL = "http://127.0.0.1:8288"
#: Seconds to wait for the server: it answers listings quickly; bulk cancels take longer.
TIMEOUT_S = 60.0


class CliError(Exception):
    """What went wrong, said in one line; the command exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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


class Server:
    """Requests to one server; answers are the decoded JSON bodies."""

    def __init__(
        self,
        url: str,
        authorization: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        headers = {"user-agent": "mainspring-cli"}
        if authorization is not None:
            headers["authorization"] = authorization
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=TIMEOUT_S, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> Any:
        if content is None:
            content = orjson.dumps({} if body is None else body)
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
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException:
            raise CliError(
                f"the mainspring server at {self.url} did not answer {method} {path} in "
                f"{TIMEOUT_S:.0f} s"
            ) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the mainspring server at {self.url} ({_reason(exc)}): is it "
                "running? Start one with `mainspring dev`, or point --url (or "
                "MAINSPRING_URL) at it"
            ) from None
        try:
            data = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            data = None
        if response.status_code >= 400:
            raise CliError(f"{method} {path}: {_refusal(response, data, path)}")
        return data


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    if not text or len(text) > 120:
        return type(exc).__name__
    return text


def _refusal(response: httpx.Response, data: Any, path: str) -> str:
    """The status and the server's own message (``{"error": ...}``)."""
    status = f"{response.status_code} {response.reason_phrase}".strip()
    message = None
    if isinstance(data, dict):
        message = data.get("error") or data.get("message") or data.get("detail")
    if message is None:
        text = response.text.strip()
        message = text[:200] if text and not text.startswith("<") else None
    if response.status_code == 401:
        key = ("--event-key", "INNGEST_EVENT_KEY") if path.startswith("/e/") else None
        key = key or ("--signing-key", "INNGEST_SIGNING_KEY")
        hint = f" (pass {key[0]} or set {key[1]})"
        return f"{status}: {message or 'unauthorized'}{hint}"
    if response.status_code == 404 and message in (None, "Not Found"):
        return f"{status}: this server has no such route (is it an older mainspring?)"
    if message is None:
        return status
    return f"{status}: {' '.join(str(message).split())}"
