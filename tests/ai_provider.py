"""A fake AI provider on 127.0.0.1 for the ``step.ai.infer`` tests.

It runs an aiohttp app on its own event loop in a thread, so a synchronous test (one that
drives servers in subprocesses) and an async one (whose loop runs the engine) can both
use it. It records every request and answers like a chat-completions API.

Paths steer the answer, so one provider serves every scenario of a module:

- ``.../fail-once/<tag>/...``: the first request with that tag answers 500 (its error
  body echoes the key, as some providers do), later ones succeed;
- ``.../status-<code>/...``: always answers that status (and echoes the key);
- anything else succeeds with ``{"id", "model", "choices": [{"message": ...}]}``, whose
  content repeats the last message of the request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

#: The key of the official-SDK app (tests/e2e/official_ai_app.py), here so that the test
#: can look for it without importing the app (whose SDK import warns).
OFFICIAL_APP_KEY = "sk-official-e2e-Hq27Lm4Secret"


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the provider received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any


class FakeProvider:
    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Seen] = []
        self._failed_tags: set[str] = set()
        self._lock = threading.Lock()

    def seen(self, tag: str) -> list[Seen]:
        """Requests whose path contains ``tag``."""
        with self._lock:
            return [r for r in self.requests if tag in r.path]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(seen)
        key = seen.headers.get("authorization", "") or seen.headers.get("x-api-key", "")
        key = key or seen.query.get("key", "")
        echo = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid"}}
        status = re.search(r"/status-(\d{3})/", request.path)
        if status is not None:
            return web.json_response(echo, status=int(status.group(1)))
        tag = re.search(r"/fail-once/([^/]+)/", request.path)
        if tag is not None:
            with self._lock:
                first = tag.group(1) not in self._failed_tags
                self._failed_tags.add(tag.group(1))
            if first:
                return web.json_response(echo, status=500)
        messages = (body or {}).get("messages") or [{"content": None}]
        content = f"echo: {messages[-1].get('content')}"
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "model": (body or {}).get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            }
        )


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    """A running :class:`FakeProvider`; ``provider.url`` is ``http://127.0.0.1:<port>``."""
    provider = FakeProvider()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", provider._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        provider.url = f"http://127.0.0.1:{port}"
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="fake-ai-provider", daemon=True)
    thread.start()
    ready.wait(10)
    if failure:
        raise failure[0]
    try:
        yield provider
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
