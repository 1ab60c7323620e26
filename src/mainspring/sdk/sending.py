"""Sending events to a server's event API (``POST /e/{event_key}``, protocol §8.3).

Each send carries ``x-inngest-event-id-seed`` (milliseconds and 10 random bytes), reused
across its retries, so the server derives the same event ids and a retried send does not
start functions twice. Network errors and 5xx answers are retried with backoff; a 4xx is
not. A server that stays unreachable ends in one :class:`~mainspring.SendEventsError` that
names the URL (its event key masked) and how to start or point at a server, its cause the
last network error without its traceback (a refused connection is not a bug to debug).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from mainspring.errors import MainspringError, SendEventsError
from mainspring.sdk.event import Event
from mainspring.sdk.settings import Settings

ATTEMPTS = 5


def id_seed(now_ms: int | None = None) -> str:
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{stamp},{base64.b64encode(os.urandom(10)).decode()}"


def _payload(events: Sequence[Event]) -> bytes:
    now = int(time.time() * 1000)
    items = []
    for event in events:
        item = event.to_wire()
        item.setdefault("ts", now)
        items.append(item)
    return orjson.dumps(items, option=orjson.OPT_NON_STR_KEYS)


def _bare(exc: BaseException) -> BaseException:
    """``exc`` without its traceback and the exceptions behind it (httpcore's, the socket's):
    shown as one line under the error that explains it."""
    exc.__cause__ = exc.__context__ = None
    return exc.with_traceback(None)


def _backoff(attempt: int) -> float:
    return float(0.1 * 2**attempt + random.uniform(0, 0.1))


class HttpEventSender:
    """Delivers a client's events to the event API named by its settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _request(self) -> tuple[str, dict[str, str]]:
        key = self.settings.event_key
        if not key:
            raise MainspringError(
                "no event key: set MAINSPRING_EVENT_KEY / INNGEST_EVENT_KEY or pass event_key="
            )
        headers = {"content-type": "application/json", "x-inngest-event-id-seed": id_seed()}
        if self.settings.env:
            headers["x-inngest-env"] = self.settings.env
        return f"{self.settings.event_api_origin}/e/{key}", headers

    def _unreachable(self, url: str, exc: httpx.HTTPError) -> SendEventsError:
        shown = url.rsplit("/e/", 1)[0] + "/e/<event key>"
        reason = str(exc) or type(exc).__name__
        hint = (
            "Is the server running? Start one with `mainspring dev`"
            if self.settings.dev
            else "Sending to a local dev server? Set INNGEST_DEV=1 (or Client(is_production="
            "False)) and start it with `mainspring dev`"
        )
        return SendEventsError(
            f"could not reach the event API at {shown} after {ATTEMPTS} attempts ({reason}). "
            f"{hint}; or point the client at your server with INNGEST_BASE_URL "
            "(INNGEST_EVENT_API_BASE_URL, or Client(event_api_base_url=...)).",
            [],
        )

    @staticmethod
    def _result(answer: httpx.Response) -> list[str]:
        try:
            body: Any = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            body = {}
        ids = [str(i) for i in body.get("ids") or []] if isinstance(body, dict) else []
        error = body.get("error") if isinstance(body, dict) else None
        if answer.status_code >= 400 or error:
            raise SendEventsError(
                f"the event API refused the events ({answer.status_code}): {error or answer.text}",
                ids,
            )
        return ids

    async def send(self, events: Sequence[Event]) -> list[str]:
        url, headers = self._request()
        body = _payload(events)
        async with httpx.AsyncClient(timeout=30.0) as http:
            for attempt in range(ATTEMPTS):
                try:
                    answer = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    if attempt + 1 == ATTEMPTS:
                        raise self._unreachable(url, exc) from _bare(exc)
                else:
                    if answer.status_code < 500 or attempt + 1 == ATTEMPTS:
                        return self._result(answer)
                await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    def send_sync(self, events: Sequence[Event]) -> list[str]:
        url, headers = self._request()
        body = _payload(events)
        with httpx.Client(timeout=30.0) as http:
            for attempt in range(ATTEMPTS):
                try:
                    answer = http.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    if attempt + 1 == ATTEMPTS:
                        raise self._unreachable(url, exc) from _bare(exc)
                else:
                    if answer.status_code < 500 or attempt + 1 == ATTEMPTS:
                        return self._result(answer)
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")
