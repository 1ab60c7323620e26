"""Calling functions over HTTP (protocol §2-§3): the executor side of the serve endpoint.

Each call POSTs the JCS-canonical body to the app's URL with ``fnId`` and ``stepId``,
signed when a signing key is set, and turns the answer into a call response. Anything that
is not an SDK's answer (a refused connection, a timeout, garbage, no ``X-Inngest-SDK``)
becomes a retriable failed attempt whose message says what went wrong.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import urllib.parse
from collections.abc import Callable

import httpx

from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallRequest, CallResponse, ErrorPayload, Failure
from mainspring.protocol.step_ids import DISCOVERY_STEP_ID

#: The reference executor's ceiling for one call.
DEFAULT_TIMEOUT_S = 2 * 3600.0

#: Larger bodies go without state: the SDK fetches it from the API (``use_api``, §2.4).
MAX_BODY_BYTES = 4 * 1024 * 1024 - 1024


def call_url(app_url: str, fn_id: str, step_id: str | None) -> str:
    """The app URL with ``fnId`` and ``stepId`` set (other query parameters kept)."""
    parts = urllib.parse.urlsplit(app_url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", fn_id), ("stepId", step_id or DISCOVERY_STEP_ID)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class HttpTransport:
    """Calls one app's serve endpoint."""

    def __init__(
        self,
        app_url: str,
        *,
        signing_key: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_url = app_url
        self._key = signing_key
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._clock = clock

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
        if self._key:
            headers["x-inngest-signature"] = signing.sign(body, self._key, at=int(self._clock()))
        url = call_url(self.app_url, request.fn_id, request.step_id)
        try:
            answer = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _failed(f"calling {url} failed: {type(exc).__name__}: {exc}")
        try:
            return wire.response_from_http(
                answer.status_code,
                dict(answer.headers),
                answer.content,
                now=datetime.datetime.now(datetime.UTC),
            )
        except wire.WireError as exc:
            return _failed(f"{url} answered {answer.status_code} but not as an SDK: {exc}")

    def forget(self, run_id: str) -> None:
        """Nothing is kept per run over HTTP."""

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()


def _failed(message: str) -> Failure:
    return Failure(ErrorPayload(name="TransportError", message=message), retriable=True)
