"""The SDK's serve handler answers what protocol §1-§5 require, tested by playing the
executor's part: hand-built call requests in, status codes, headers and opcodes out."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallContext, CallRequest
from mainspring.protocol.step_ids import hash_step_id
from mainspring.sdk.serve.handler import ServeHandler, ServeRequest, ServeResponse

KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
NOW = 1_800_000_000
URL = "http://localhost:8000/api/inngest"


def build(*, dev: bool = True) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    client = inngest.Client(app_id="shop", is_production=not dev, signing_key=None if dev else KEY)

    @client.create_function(fn_id="pair", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def pair(ctx: inngest.Context) -> list[object]:
        a, b = await ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: 1), lambda: ctx.step.run("b", lambda: 2))
        )
        return [a, b]

    @client.create_function(fn_id="refuse", trigger=inngest.TriggerEvent(event="no"))
    async def refuse(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("not today")

    return client, [pair, refuse]


def call_body(steps: dict[str, Any] | None = None) -> bytes:
    steps = steps or {}
    return wire.request_to_wire(
        CallRequest(
            fn_id="shop-pair",
            event={"name": "go", "data": {}, "id": "e1", "ts": 1},
            events=[{"name": "go", "data": {}, "id": "e1", "ts": 1}],
            steps=steps,
            ctx=CallContext(run_id="r1", attempt=0, max_attempts=3, stack=list(steps)),
        )
    )


async def post(handler: ServeHandler, query: str, body: bytes, **headers: str) -> ServeResponse:
    return await handler.handle(ServeRequest("POST", f"{URL}?{query}", headers, body))


async def test_a_parallel_run_request_by_request() -> None:
    client, functions = build()
    handler = ServeHandler(client, functions, clock=lambda: NOW)
    first = await post(handler, "fnId=shop-pair&stepId=step", call_body())
    assert first.status == 206
    assert first.headers["x-inngest-sdk"].startswith("mainspring:v")
    assert first.headers["x-inngest-req-version"] == "2"
    ops = orjson.loads(first.body)
    assert [(op["op"], op["id"]) for op in ops] == [
        ("StepPlanned", hash_step_id("a")),
        ("StepPlanned", hash_step_id("b")),
    ]
    run_a = await post(handler, f"fnId=shop-pair&stepId={hash_step_id('a')}", call_body())
    assert run_a.status == 206
    [op] = orjson.loads(run_a.body)
    assert (op["op"], op["data"]) == ("StepRun", 1)
    memos = {hash_step_id("a"): {"data": 1}, hash_step_id("b"): {"data": 2}}
    done = await post(handler, "fnId=shop-pair&stepId=step", call_body(memos))
    assert done.status == 200
    assert orjson.loads(done.body) == [1, 2]


async def test_function_errors_carry_the_retry_decision() -> None:
    client, functions = build()
    handler = ServeHandler(client, functions)
    body = call_body().replace(b"shop-pair", b"shop-refuse")
    answer = await post(handler, "fnId=shop-refuse&stepId=step", body)
    assert answer.status >= 400
    assert answer.headers["x-inngest-no-retry"] == "true"
    assert orjson.loads(answer.body)["message"] == "not today"


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("stepId=step", b"{}", 400, "missing_fn_id"),
        ("fnId=shop-nope&stepId=step", b"{}", 500, "function_not_found"),
        ("fnId=shop-pair&stepId=step", b"not json", 400, "malformed_request"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    query: str, body: bytes, status: int, code: str
) -> None:
    client, functions = build()
    answer = await post(ServeHandler(client, functions), query, body)
    assert answer.status == status
    assert orjson.loads(answer.body)["code"] == code
    assert "x-inngest-sdk" in answer.headers


async def test_cloud_mode_requires_a_valid_signature_and_signs_its_answer() -> None:
    client, functions = build(dev=False)
    handler = ServeHandler(client, functions, clock=lambda: NOW)
    body = call_body()
    unsigned = await post(handler, "fnId=shop-pair&stepId=step", body)
    assert unsigned.status == 401
    forged = signing.sign(body, "signkey-test-00", at=NOW)
    assert (
        await post(handler, "fnId=shop-pair", body, **{"x-inngest-signature": forged})
    ).status == 401
    good = signing.sign(body, KEY, at=NOW)
    answer = await post(
        handler, "fnId=shop-pair&stepId=step", body, **{"x-inngest-signature": good}
    )
    assert answer.status == 206
    signing.verify(answer.headers["x-inngest-signature"], answer.body, [KEY], now=NOW)


async def test_introspection() -> None:
    client, functions = build()
    handler = ServeHandler(client, functions)
    answer = await handler.handle(ServeRequest("GET", URL, {}, b""))
    body = orjson.loads(answer.body)
    assert answer.status == 200
    assert body["mode"] == "dev"
    assert body["function_count"] == 2
    assert body["schema_version"] == "2024-05-24"


async def test_sync_posts_the_registration_to_the_server() -> None:
    client, functions = build()
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "modified": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        handler = ServeHandler(client, functions, http=http)
        answer = await handler.handle(
            ServeRequest("PUT", f"{URL}?deployId=d1", {"x-inngest-server-kind": "dev"}, b"")
        )
    assert answer.status == 200
    assert answer.headers["x-inngest-sync-kind"] == "out_of_band"
    [request] = seen
    assert request.url.path == "/fn/register"
    assert request.url.params["deployId"] == "d1"
    body = orjson.loads(request.content)
    assert body["appName"] == "shop"
    assert body["url"] == URL
    [pair, _refuse] = body["functions"]
    assert pair["id"] == "shop-pair"
    assert pair["steps"]["step"]["runtime"]["url"] == f"{URL}?fnId=shop-pair&stepId=step"
    assert pair["steps"]["step"]["retries"] == {"attempts": 2}


async def test_sync_refuses_a_server_of_the_other_kind() -> None:
    client, functions = build()
    handler = ServeHandler(client, functions)
    answer = await handler.handle(ServeRequest("PUT", URL, {"x-inngest-server-kind": "cloud"}, b""))
    assert answer.status == 400
    assert orjson.loads(answer.body)["code"] == "server_kind_mismatch"
