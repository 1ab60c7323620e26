"""Streamed answers (``Streaming.FORCE``) through the FastAPI and bare ASGI adapters, in
memory, and the pool sync steps run on (``INNGEST_THREAD_POOL_MAX_WORKERS``). The server's
side of a streamed answer is tested end to end in ``tests/e2e/test_streaming.py``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import fastapi
import httpx
import orjson
import pytest

import mainspring as inngest
import mainspring.fast_api
from mainspring.protocol import wire
from mainspring.protocol.messages import CallContext, CallRequest
from mainspring.sdk.serve import asgi, handler, streaming, threads


def call_body(fn_id: str) -> bytes:
    event = {"name": "go", "data": {}, "id": "e1", "ts": 1}
    return wire.request_to_wire(CallRequest(fn_id, event, [event], {}, CallContext(run_id="r1")))


async def post(app: Any, method: str, target: str, body: bytes = b"") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.request(method, target, content=body)


# -- streamed answers ----------------------------------------------------------------------


def streaming_app() -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    # The port is the discard port: a sync (PUT) is refused at once, without a server.
    client = inngest.Client(app_id="shop", is_production=False, api_base_url="http://127.0.0.1:9")

    @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="go"))
    async def slow(ctx: inngest.Context) -> str:
        await asyncio.sleep(0.1)  # long enough for several keep-alives at 10 ms
        return "done"

    @client.create_function(fn_id="refuse", trigger=inngest.TriggerEvent(event="go"))
    async def refuse(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("not today")

    return client, [slow, refuse]


def served(name: str, client: inngest.Client, functions: list[Any], **options: Any) -> Any:
    """An ASGI app: FastAPI's adapter or the bare one."""
    if name == "fastapi":
        app = fastapi.FastAPI()
        mainspring.fast_api.serve(app, client, functions, **options)
        return app
    return asgi.serve(client, functions, **options)


def unwrap(answer: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """The real answer in a 201 streamed one: spaces, then ``{body, headers, status}``."""
    assert answer.status_code == 201
    document = orjson.loads(answer.content)  # JSON takes the spaces before it as blanks
    return document["status"], document["headers"], document["body"].encode()


@pytest.fixture
def quick_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.01)


@pytest.mark.usefixtures("quick_keepalive")
@pytest.mark.parametrize("name", ["fastapi", "asgi"])
async def test_a_forced_stream_sends_spaces_then_the_real_answer(name: str) -> None:
    client, functions = streaming_app()
    app = served(name, client, functions, streaming=inngest.Streaming.FORCE)
    plain = served(name, client, functions)
    target, body = "/api/inngest?fnId=shop-slow&stepId=step", call_body("shop-slow")
    answer = await post(app, "POST", target, body)
    assert answer.headers["x-inngest-sdk"].startswith("mainspring:v")
    spaces = len(answer.content) - len(answer.content.lstrip(b" "))
    assert spaces >= 3, answer.content  # one at once, then one per 10 ms while it runs
    status, headers, inner = unwrap(answer)
    expected = await post(plain, "POST", target, body)
    assert (status, inner) == (expected.status_code, expected.content) == (200, b'"done"')
    assert headers["x-inngest-sdk"] == expected.headers["x-inngest-sdk"]

    failed = await post(app, "POST", "/api/inngest?fnId=shop-refuse", call_body("shop-refuse"))
    status, headers, inner = unwrap(failed)
    assert status >= 400
    assert headers["x-inngest-no-retry"] == "true"  # the retry decision travels inside
    assert orjson.loads(inner)["message"] == "not today"


@pytest.mark.parametrize("name", ["fastapi", "asgi"])
async def test_only_executions_stream(name: str) -> None:
    client, functions = streaming_app()
    app = served(name, client, functions, streaming=inngest.Streaming.FORCE)
    assert (await post(app, "GET", "/api/inngest")).status_code == 200
    assert (await post(app, "POST", "/api/inngest?probe=trust")).status_code == 200
    sync = await post(app, "PUT", "/api/inngest")  # plain, if only to say it failed
    assert (sync.status_code, sync.json()["code"]) == (500, "sync_failed")


@pytest.mark.parametrize(
    ("variable", "argument", "status"),
    [
        ("force", None, 201),
        ("allow", None, 201),
        ("force", inngest.Streaming.DISABLE, 200),  # the argument wins
        (None, None, 200),
    ],
)
async def test_streaming_defaults_to_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    quick_keepalive: None,
    variable: str | None,
    argument: inngest.Streaming | None,
    status: int,
) -> None:
    if variable is not None:
        monkeypatch.setenv("INNGEST_STREAMING", variable)
    client, functions = streaming_app()
    app = served("fastapi", client, functions, streaming=argument)
    answer = await post(app, "POST", "/api/inngest?fnId=shop-slow", call_body("shop-slow"))
    assert answer.status_code == status


# -- where sync steps run (INNGEST_THREAD_POOL_MAX_WORKERS) --------------------------------


@pytest.mark.parametrize("workers", [None, "0", "2"])
async def test_the_sync_step_pool(monkeypatch: pytest.MonkeyPatch, workers: str | None) -> None:
    if workers is not None:
        monkeypatch.setenv("INNGEST_THREAD_POOL_MAX_WORKERS", workers)
    client = inngest.Client(app_id="shop", is_production=False)

    @client.create_function(fn_id="where", trigger=inngest.TriggerEvent(event="go"))
    def where(ctx: inngest.ContextSync) -> list[object]:
        here = ctx.step.run(
            "here", lambda: [threading.get_ident(), threading.current_thread().name]
        )
        return list(here)

    served = handler.ServeHandler(client, [where])
    url = "http://shop/api/inngest?fnId=shop-where&stepId=step"
    answer = await served.handle(handler.ServeRequest("POST", url, {}, call_body("shop-where")))
    [op] = orjson.loads(answer.body)
    ident, thread_name = op["data"]
    if workers == "0":  # no pool: on the thread answering the request, this test's
        assert ident == threading.get_ident()
    elif workers == "2":
        assert thread_name.startswith("mainspring-step")
    else:  # the event loop's default executor
        assert ident != threading.get_ident()
        assert not thread_name.startswith("mainspring-step")


def test_the_inline_executor_hands_errors_back() -> None:
    def boom() -> None:
        raise ValueError("boom")

    future = threads.InlineExecutor().submit(boom)
    assert isinstance(future.exception(), ValueError)
    assert threads.InlineExecutor().submit(lambda: 7).result() == 7


def test_a_streaming_argument_that_is_no_streaming_mode_is_refused() -> None:
    client, functions = streaming_app()
    assert streaming.streaming_mode("force", client.settings) is inngest.Streaming.FORCE
    with pytest.raises(ValueError, match="streaming=True"):
        served("fastapi", client, functions, streaming=True)
