"""A minimal HTTP/1.1 app on loopback for tests of apps that fail over real HTTP: it
forwards calls to the SDK's real serve handler or misbehaves on the calls a test picks,
and can stop listening and come back on the same port."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

import mainspring as inngest
from mainspring.sdk.serve.asgi import serve
from tests.e2e.support import free_port


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the app received."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def fn_id(self) -> str:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)
        return query.get("fnId", [""])[0]


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


SDK = {"x-inngest-sdk": "inngest-js:v3.0.0"}
#: ``Reply``: answer it; ``bytes``: write them raw (not HTTP); ``None``: hang up.
Answer = Reply | bytes | None
#: Given the app, the 1-based number of the call and the call; ``app.forward(call)``
#: answers as the real SDK would.
Behaviour = Callable[["LoopbackApp", int, Call], Awaitable[Answer]]


class LoopbackApp:
    """A minimal HTTP/1.1 server on 127.0.0.1 that can stop listening and come back on
    the same port. Every answer closes its connection, so each call connects anew (a
    stopped app then refuses the next call rather than a kept-alive socket taking it)."""

    def __init__(
        self,
        client: inngest.Client,
        functions: Sequence[inngest.Function[Any]],
        behave: Behaviour | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/inngest"
        self.calls: list[Call] = []
        self._behave = behave or (lambda app, n, call: app.forward(call))
        self._sdk = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=serve(client, functions)), base_url="http://app"
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    def stop_listening(self) -> None:
        """Refuse new connections from now on (calls in progress finish)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def close(self) -> None:
        self.stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sdk.aclose()

    async def forward(self, call: Call) -> Reply:
        """What the SDK's real serve handler answers."""
        skip = {"host", "content-length", "connection"}
        answer = await self._sdk.post(
            call.target,
            content=call.body,
            headers={k: v for k, v in call.headers.items() if k not in skip},
        )
        headers = {
            k: v
            for k, v in answer.headers.items()
            if k not in ("content-length", "connection", "transfer-encoding")
        }
        return Reply(answer.status_code, answer.content, headers)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                if line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            call = Call(method, target, headers, body)
            self.calls.append(call)
            answer = await self._behave(self, len(self.calls), call)
            if isinstance(answer, Reply):
                fields = {**answer.headers, "content-length": str(len(answer.body))}
                fields["connection"] = "close"
                head_out = f"HTTP/1.1 {answer.status} X\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in fields.items()
                )
                writer.write(head_out.encode("latin-1") + b"\r\n" + answer.body)
            elif isinstance(answer, bytes):
                writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


@asynccontextmanager
async def running(
    tmp_path: pathlib.Path,
    client: inngest.Client,
    functions: Sequence[inngest.Function[Any]],
    behave: Behaviour | None = None,
    *,
    listen: bool = True,
    **options: Any,
) -> AsyncIterator[tuple[inngest.Engine, LoopbackApp]]:
    """An app on loopback (listening or not) and an engine calling it, fast retries."""
    app = LoopbackApp(client, functions, behave)
    if listen:
        await app.start()
    options.setdefault("retry_backoff", 0.01)
    # One step per call, so that a failure can be put between two steps' calls.
    options.setdefault("chain_seconds", 0)
    engine = inngest.Engine(
        client,
        functions,
        database=tmp_path / "engine.db",
        durability="normal",
        app_url=app.url,
        **options,
    )
    try:
        async with engine:
            yield engine, app
    finally:
        await app.close()
