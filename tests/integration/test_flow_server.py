"""Flow control through the server (an app synced over HTTP, both in memory over ASGI):
held and skipped runs as REST and GraphQL show them, and a batch too large to send."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import orjson

import mainspring as inngest
from mainspring.sdk.serve.asgi import serve
from tests.integration.test_server import HostRouter


def app() -> tuple[inngest.Client, list[inngest.Function[Any]], asyncio.Event]:
    client = inngest.Client(app_id="flowapp", is_production=False, api_base_url="http://server")
    gate = asyncio.Event()

    @client.create_function(
        fn_id="one-at-a-time",
        trigger=inngest.TriggerEvent(event="flow/held"),
        concurrency=[inngest.Concurrency(limit=1, key="event.data.account")],
    )
    async def held(ctx: inngest.Context) -> str:
        return await ctx.step.run("wait", _wait, gate)

    @client.create_function(
        fn_id="limited",
        trigger=inngest.TriggerEvent(event="flow/limited"),
        rate_limit=inngest.RateLimit(limit=1, period="1h"),
    )
    async def limited(ctx: inngest.Context) -> str:
        return "ran"

    @client.create_function(
        fn_id="big-batch",
        trigger=inngest.TriggerEvent(event="flow/big"),
        batch_events=inngest.Batch(max_size=12, timeout="60s"),
    )
    async def big(ctx: inngest.Context) -> list[int]:
        return [len(e.data["blob"]) for e in ctx.events]

    return client, [held, limited, big], gate


async def _wait(gate: asyncio.Event) -> str:
    await gate.wait()
    return "done"


async def _send(http: httpx.AsyncClient, name: str, data: dict[str, Any]) -> str:
    answer = await http.post(
        "http://server/e/key", content=orjson.dumps({"name": name, "data": data})
    )
    assert answer.status_code == 200, answer.text
    [event_id] = answer.json()["ids"]
    assert isinstance(event_id, str)
    return event_id


async def _gql(http: httpx.AsyncClient, query: str) -> Any:
    answer = await http.post("http://server/v0/gql", json={"query": query})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


async def test_held_and_skipped_runs_in_rest_and_graphql(tmp_path: pathlib.Path) -> None:
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client, functions, gate = app()
        router.hosts["app"] = httpx.ASGITransport(app=serve(client, functions, http=http))
        engine = router.server(tmp_path, http)
        async with engine:
            synced = await http.put("http://app/api/inngest")
            assert synced.status_code == 200, synced.text
            first = await _send(http, "flow/held", {"account": "acme"})
            second = await _send(http, "flow/held", {"account": "acme"})
            await asyncio.sleep(0.2)
            # Its first call is out (its step runs): running, though nothing is recorded.
            [going] = (await http.get(f"http://server/v1/events/{first}/runs")).json()["data"]
            [queued] = (await http.get(f"http://server/v1/events/{second}/runs")).json()["data"]
            detail = (await http.get(f"http://server/v1/runs/{queued['run_id']}")).json()["data"]
            held = await _gql(
                http,
                f'{{ run(runID: "{queued["run_id"]}") {{ status trace {{ childrenSpans '
                "{ name status } } } }",
            )
            await _send(http, "flow/limited", {})
            over = await _send(http, "flow/limited", {})
            await asyncio.sleep(0.1)
            [skipped] = (await http.get(f"http://server/v1/events/{over}/runs")).json()["data"]
            skipped_gql = await _gql(
                http,
                f'{{ run(runID: "{skipped["run_id"]}") {{ status trace {{ childrenSpans '
                "{ name status } } } }",
            )
            gate.set()
            await engine.wait(queued["run_id"], timeout=5)
    assert going["status"] == "Running"
    assert going["run_started_at"] is not None
    assert queued["status"] == "Queued"
    assert detail["waiting_for"]["waiting_for"] == "concurrency"
    assert detail["waiting_for"]["key"] == "event.data.account = 'acme'"
    assert detail["waiting_for"]["limit"] == 1
    assert held["run"]["status"] == "QUEUED"
    [span] = held["run"]["trace"]["childrenSpans"]
    assert span["status"] == "QUEUED"
    assert span["name"].startswith("Waiting for concurrency")
    assert skipped["status"] == "Skipped"
    assert skipped["error"]["name"] == "RateLimited"
    assert skipped_gql["run"]["status"] == "SKIPPED"
    [span] = skipped_gql["run"]["trace"]["childrenSpans"]
    assert span["status"] == "SKIPPED"
    assert "rate limit of 1 per 1h" in span["name"]


async def test_a_batch_too_large_to_send_goes_by_the_api(tmp_path: pathlib.Path) -> None:
    """Twelve events of 400 KB: the call would pass 4 MB, so it carries no state and the
    SDK fetches the batch's events from ``/v0/runs/{id}/batch``."""
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client, functions, _ = app()
        router.hosts["app"] = httpx.ASGITransport(app=serve(client, functions, http=http))
        engine = router.server(tmp_path, http)
        async with engine:
            synced = await http.put("http://app/api/inngest")
            assert synced.status_code == 200, synced.text
            ids = [await _send(http, "flow/big", {"blob": "x" * 400_000}) for _ in range(12)]
            [run] = await engine.runs(ids[-1])
            done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed", done.error
    assert done.output == [400_000] * 12
    assert f"GET server/v0/runs/{run.id}/batch" in router.paths
