"""The engine's HTTP clients on loopback: keep-alive, the pool's bound, the body a signed and
an unsigned call send, and the words of every failure, with aiohttp (the default) and with
an httpx client passed in. Runs through a whole engine are in test_http_app_failures.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

import mainspring as inngest
from mainspring.engine.http_transport import AiohttpCallClient, CallClient, HttpTransport
from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallContext, CallRequest, Complete, Failure
from tests.conftest import TEST_SIGNING_KEY, run_to_end
from tests.e2e.support import free_port
from tests.integration.loopback_app import running

pytestmark = pytest.mark.backends("sqlite", "postgres")

SDK_HEADERS = [(b"content-type", b"application/json"), (b"x-inngest-sdk", b"mainspring:v0.1.0")]


class Recorder:
    """An ASGI app answering every call ``"ok"`` as an SDK would, after ``delay`` seconds,
    and noting the client port (one per connection), the headers and the body of each."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.ports: list[int] = []
        self.calls: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.ports.append(scope["client"][1])
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.calls.append((headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": SDK_HEADERS})
        await send({"type": "http.response.body", "body": b'"ok"'})


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` on uvicorn on loopback, in this event loop; yields its serve URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn stopped while starting"
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}/api/inngest?token=secret"
    finally:
        server.should_exit = True
        await task


def request(steps: dict[str, Any] | None = None) -> CallRequest:
    steps = steps or {}
    event = {"name": "app/go", "data": {"b": 1, "a": [True, None]}, "id": "e1", "ts": 5}
    return CallRequest(
        fn_id="app-fn",
        event=event,
        events=[event],
        steps=steps,
        ctx=CallContext(run_id="run-1", stack=tuple(steps), job_id="j", request_id="j:0"),
        step_id="s" * 40,
        version=2,
    )


@asynccontextmanager
async def aiohttp_client() -> AsyncIterator[CallClient | httpx.AsyncClient]:
    client = AiohttpCallClient()
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def httpx_client() -> AsyncIterator[CallClient | httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


CLIENTS = [
    pytest.param(aiohttp_client, id="aiohttp"),
    pytest.param(httpx_client, id="httpx"),
]


# -- the default client --------------------------------------------------------------------


async def test_sequential_calls_share_one_kept_alive_connection() -> None:
    app = Recorder()
    client = AiohttpCallClient()
    async with serving(app) as url:
        transport = HttpTransport(url, http=client)
        for _ in range(20):
            assert isinstance(await transport.call(request()), Complete)
        await client.close()
    assert len(app.ports) == 20
    assert len(set(app.ports)) == 1


async def test_concurrent_calls_open_at_most_max_connections() -> None:
    app = Recorder(delay=0.01)
    client = AiohttpCallClient(max_connections=4)
    async with serving(app) as url:
        transport = HttpTransport(url, http=client)
        answers = await asyncio.gather(*(transport.call(request()) for _ in range(60)))
        await client.close()
    assert all(isinstance(answer, Complete) for answer in answers)
    assert 1 < len(set(app.ports)) <= 4


async def test_a_closed_client_opens_a_new_session_on_the_next_call() -> None:
    app = Recorder()
    client = AiohttpCallClient()
    async with serving(app) as url:
        transport = HttpTransport(url, http=client)
        assert isinstance(await transport.call(request()), Complete)
        await client.close()
        assert isinstance(await transport.call(request()), Complete)
        await client.close()
    assert len(set(app.ports)) == 2


async def test_the_transport_closes_only_a_client_it_made() -> None:
    app = Recorder()
    shared = AiohttpCallClient()
    async with serving(app) as url:
        borrowing = HttpTransport(url, http=shared)
        owning = HttpTransport(url)
        for transport in (borrowing, owning):
            assert isinstance(await transport.call(request()), Complete)
            await transport.close()
        assert isinstance(await borrowing.call(request()), Complete)  # still open
        await shared.close()
    assert len(set(app.ports)) == 2  # the shared client's connection was kept


def test_proxies_come_from_the_environment_once_per_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "skip.internal")
    client = AiohttpCallClient()
    assert client._proxy("http://app.internal/api?fnId=a") == "http://proxy.internal:3128"
    assert client._proxy("http://skip.internal/api?fnId=a") is None
    monkeypatch.delenv("HTTP_PROXY")
    assert client._proxy("http://app.internal/api?fnId=b") == "http://proxy.internal:3128"
    assert AiohttpCallClient()._proxy("http://app.internal/api") is None


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AiohttpCallClient(max_connections=0)


# -- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_a_signed_call_sends_the_canonical_body_it_signed(make_client: Any) -> None:
    app = Recorder()
    async with serving(app) as url, make_client() as client:
        transport = HttpTransport(url, http=client, signing_key=TEST_SIGNING_KEY)
        call = request({"a" * 40: {"data": 1.0}, "b" * 40: {"data": {"y": 1, "x": "é"}}})
        assert isinstance(await transport.call(call), Complete)
    [(headers, body)] = app.calls
    assert body == wire.canonical_json(orjson.loads(body))
    assert body == wire.request_to_wire(call)
    assert b'{"data":1}' in body  # 1.0 in ES6 form
    signing.verify(headers["x-inngest-signature"], body, [TEST_SIGNING_KEY], now=int(time.time()))


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_an_unsigned_call_sends_plain_json_of_the_same_values(make_client: Any) -> None:
    app = Recorder()
    async with serving(app) as url, make_client() as client:
        transport = HttpTransport(url, http=client)
        call = request({"a" * 40: {"data": 1.5}, "b" * 40: {"data": {"y": 1, "x": "é"}}})
        assert isinstance(await transport.call(call), Complete)
    [(headers, body)] = app.calls
    assert "x-inngest-signature" not in headers
    assert body == orjson.dumps(orjson.loads(body))
    assert orjson.loads(body) == orjson.loads(wire.request_to_wire(call))
    assert headers["x-inngest-step-id"] == "s" * 40
    assert headers["content-type"] == "application/json"


# -- failures ------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A loopback TCP server that answers with whatever ``handler`` writes."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/inngest?token=secret"
    finally:
        server.close()


def writes(data: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return handler


async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)


async def answers_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-inngest-sdk: js:v3\r\n\r\n")
    for _ in range(100):  # a byte now and then: never idle for long, never done
        await asyncio.sleep(0.05)
        writer.write(b" ")


@pytest.mark.parametrize("make_client", CLIENTS)
@pytest.mark.parametrize(
    ("handler", "problems"),
    [
        pytest.param(writes(b"SPLAT\r\n\r\n"), ["did not answer with valid HTTP"], id="not-http"),
        pytest.param(writes(b""), ["did not answer with valid HTTP", "disconnected"], id="hang-up"),
        pytest.param(
            writes(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nx-inngest-sdk: js:v3\r\n\r\nab"),
            ["did not answer with valid HTTP"],
            id="short-body",
        ),
        pytest.param(hangs, ["timed out after 0.3 s waiting for the answer"], id="hangs"),
        pytest.param(answers_slowly, ["timed out after 0.3 s"], id="trickles"),
        pytest.param(
            writes(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 7\r\n\r\nno app!"),
            ["answered HTTP 502 without the X-Inngest-SDK header", "no app!"],
            id="not-an-sdk",
        ),
        pytest.param(
            writes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-Inngest-SDK: js:v3\r\n\r\n{,"),
            ["answered HTTP 200 with an invalid body", "not valid JSON"],
            id="invalid-json",
        ),
    ],
)
async def test_failures_are_retriable_and_named_without_the_query(
    make_client: Any, handler: Handler, problems: list[str]
) -> None:
    async with raw_server(handler) as url, make_client() as client:
        transport = HttpTransport(url, http=client, timeout=0.3)
        started = time.monotonic()
        response = await transport.call(request())
    assert time.monotonic() - started < 2
    assert isinstance(response, Failure)
    assert response.retriable
    message = response.error.message
    for problem in problems:
        assert problem in message, message
    assert url.partition("?")[0] in message
    assert "token" not in message
    assert "fnId" not in message


@pytest.mark.parametrize("make_client", CLIENTS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refused_connection_asks_whether_the_app_runs(make_client: Any, host: str) -> None:
    where = f"http://{host}:{free_port()}/api/inngest"
    async with make_client() as client:
        response = await HttpTransport(f"{where}?token=secret", http=client).call(request())
    assert isinstance(response, Failure)
    assert response.retriable
    assert response.error.message == f"connection refused by {where}: is the app running?"


# -- the engine ----------------------------------------------------------------------------


def is_open(calls: AiohttpCallClient) -> bool:
    return calls._session is not None and not calls._session.closed


async def test_the_engine_shares_one_client_sized_by_its_concurrency(tmp_path: Any) -> None:
    client = inngest.Client(app_id="shared", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> int:
        return await ctx.step.run("one", lambda: 1) + await ctx.step.run("two", lambda: 2)

    async with running(tmp_path, client, [fn], concurrency=7) as (engine, _):
        calls = engine._calls
        assert calls is not None
        assert calls.max_connections == 7
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        assert run.status == "Completed", run.error
        assert run.output == 3
        assert is_open(calls)
        await engine.stop()
        assert not is_open(calls)  # closed by stop
        await engine.start()  # and opened again by the next start's first call
        again = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        assert again.status == "Completed", again.error


async def test_an_engine_given_an_httpx_client_uses_it_and_leaves_it_open(tmp_path: Any) -> None:
    client = inngest.Client(app_id="given", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> str:
        return await ctx.step.run("one", lambda: "done")

    async with httpx.AsyncClient() as http:
        async with running(tmp_path, client, [fn], http=http) as (engine, _):
            assert engine._calls is None
            run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        assert run.status == "Completed", run.error
        assert not http.is_closed
