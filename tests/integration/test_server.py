"""The server's HTTP API with an app synced over HTTP (both sides in memory, over ASGI)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import orjson

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.protocol import signing
from mainspring.sdk.serve.asgi import serve
from mainspring.server.app import create_app


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-memory ASGI app of its host."""

    def __init__(self) -> None:
        self.hosts: dict[str, httpx.ASGITransport] = {}
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.host}{request.url.path}")
        return await self.hosts[request.url.host].handle_async_request(request)

    def server(self, tmp_path: pathlib.Path, http: httpx.AsyncClient) -> Engine:
        """A server engine (no functions of its own) on ``tmp_path``, reached as host
        ``server``, calling apps through ``http``."""
        engine = Engine(
            inngest.Client(app_id="server", is_production=False),
            [],
            database=tmp_path / "server.db",
            durability="normal",
            retry_backoff=0.01,
            http=http,
        )
        self.hosts["server"] = httpx.ASGITransport(app=create_app(engine))
        return engine


def shop() -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    client = inngest.Client(app_id="shop", is_production=False, api_base_url="http://server")

    @client.create_function(fn_id="order", trigger=inngest.TriggerEvent(event="shop/order"))
    async def order(ctx: inngest.Context) -> dict[str, object]:
        total = await ctx.step.run("price", lambda: ctx.event.data["qty"] * 3)
        a, b = await ctx.group.parallel(
            (
                lambda: ctx.step.run("pack", lambda: "packed"),
                lambda: ctx.step.run("bill", lambda: "billed"),
            )
        )
        return {"total": total, "steps": [a, b]}

    return client, [order]


async def test_an_app_synced_over_http_runs_events_sent_to_the_api(tmp_path: pathlib.Path) -> None:
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client, functions = shop()
        router.hosts["app"] = httpx.ASGITransport(app=serve(client, functions, http=http))
        engine = router.server(tmp_path, http)
        async with engine:
            health = await http.get("http://server/health")
            assert health.json() == {"status": 200, "message": "OK"}
            assert health.headers["x-inngest-server-kind"] == "dev"
            synced = await http.put(
                "http://app/api/inngest", headers={"x-inngest-server-kind": "dev"}
            )
            assert synced.status_code == 200, synced.text
            assert synced.json()["ok"] is True
            sent = await http.post(
                "http://server/e/dev-key",
                content=orjson.dumps({"name": "shop/order", "data": {"qty": 4}}),
            )
            assert sent.status_code == 200, sent.text
            [event_id] = sent.json()["ids"]
            run_id = None
            for _ in range(500):
                runs = (await http.get(f"http://server/v1/events/{event_id}/runs")).json()["data"]
                if runs and runs[0]["status"] == "Completed":
                    run_id = runs[0]["run_id"]
                    break
                await asyncio.sleep(0.01)
            assert run_id is not None
            run = (await http.get(f"http://server/v1/runs/{run_id}")).json()["data"]
            assert run["output"] == {"total": 12, "steps": ["packed", "billed"]}
            assert run["function_id"] == "shop-order"
            events = (await http.get("http://server/v1/events?name=shop/order")).json()["data"]
            assert [e["internal_id"] for e in events] == [event_id]
            batch = await http.get(f"http://server/v0/runs/{run_id}/batch")
            assert batch.json()[0]["data"] == {"qty": 4}
            listed = (await http.get("http://server/v1/apps/shop/functions")).json()["data"]
            assert [f["id"] for f in listed["functions"]] == ["shop-order"]
            invoked = await http.post(
                "http://server/invoke/shop-order", content=orjson.dumps({"data": {"qty": 1}})
            )
            assert invoked.status_code == 200, invoked.text
            [by_invoke] = await engine.runs(invoked.json()["id"])
            assert (await engine.wait(by_invoke.id, timeout=10)).output == {
                "total": 3,
                "steps": ["packed", "billed"],
            }
            missing = await http.post("http://server/invoke/shop-nope", content=b"{}")
            assert missing.status_code == 404
            # Cancelling a finished run through the v0 route is a no-op; an unknown run is not.
            assert (await http.delete(f"http://server/v0/runs/{run_id}")).status_code == 204
            assert (await http.delete("http://server/v0/runs/01NOPE")).status_code == 404
            # Removing the app by its URL: its functions are gone, its events start nothing.
            assert (await http.delete("http://server/fn/remove")).status_code == 400
            removed = await http.delete(
                "http://server/fn/remove", params={"url": "http://app/api/inngest"}
            )
            assert removed.status_code == 200, removed.text
            assert removed.json()["removed"] == ["shop"]
            gone = await http.get("http://server/v1/apps/shop/functions")
            assert gone.status_code == 404
            again = await http.delete(
                "http://server/fn/remove", params={"url": "http://app/api/inngest"}
            )
            assert again.status_code == 404
            [after] = await engine.send(inngest.Event(name="shop/order", data={"qty": 1}))
            assert await engine.runs(after) == []


async def test_bad_input_gets_a_4xx_naming_the_problem(tmp_path: pathlib.Path) -> None:
    engine = Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        cases = [
            ("/e/key", b"not json", "not valid JSON"),
            ("/e/key", orjson.dumps({"data": {}}), "name is required"),
            ("/e/key", orjson.dumps({"name": "inngest/x"}), "reserved"),
            ("/e/key", orjson.dumps([1]), "not a JSON object"),
            ("/fn/register", orjson.dumps({"url": "http://a"}), "App ID required"),
            (
                "/fn/register",
                orjson.dumps({"appName": "a", "url": "http://a", "functions": []}),
                "No functions",
            ),
        ]
        for path, body, problem in cases:
            answer = await http.post(path, content=body)
            assert answer.status_code == 400, (path, answer.text)
            assert problem in answer.json()["error"], (path, answer.text)
        bad_fn = {
            "appName": "a",
            "url": "http://a",
            "functions": [
                {
                    "id": "a-f",
                    "name": "f",
                    "triggers": [{"event": "x", "expression": "event.data =="}],
                    "steps": {"step": {"runtime": {"url": "http://a?fnId=a-f"}}},
                }
            ],
        }
        answer = await http.post("/fn/register", content=orjson.dumps(bad_fn))
        assert answer.status_code == 400
        assert "a-f" in answer.json()["data"]
        assert (await http.get("/v1/runs/nope")).status_code == 404


async def test_a_resent_batch_with_the_same_seed_starts_nothing_twice(
    tmp_path: pathlib.Path,
) -> None:
    client = inngest.Client(app_id="seeds")
    calls: list[int] = []

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="pay"))
    async def fn(ctx: inngest.Context) -> None:
        calls.append(1)

    engine = Engine(client, [fn], database=tmp_path / "s.db", durability="normal")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        body = orjson.dumps([{"name": "pay", "data": {"n": 1}}, {"name": "pay", "data": {"n": 2}}])
        headers = {"x-inngest-event-id-seed": "1767225600000,AAECAwQFBgcICQ=="}
        first = (await http.post("/e/key", content=body, headers=headers)).json()["ids"]
        again = (await http.post("/e/key", content=body, headers=headers)).json()["ids"]
        assert first == again
        assert len(set(first)) == 2
        for event_id in first:
            [run] = await engine.runs(event_id)
            await engine.wait(run.id, timeout=5)
    assert calls == [1, 1]


async def test_large_run_state_goes_through_the_api(tmp_path: pathlib.Path) -> None:
    """Ten steps of 1 MB each: past 4 MB the call carries no state and the SDK fetches it."""
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client = inngest.Client(app_id="big", is_production=False, api_base_url="http://server")

        @client.create_function(fn_id="big", trigger=inngest.TriggerEvent(event="big/go"))
        async def big(ctx: inngest.Context) -> list[int]:
            sizes = []
            for i in range(10):
                blob = await ctx.step.run(f"blob-{i}", str.__mul__, str(i), 1_000_000)
                sizes.append(len(blob))
            return sizes

        router.hosts["app"] = httpx.ASGITransport(app=serve(client, [big], http=http))
        engine = Engine(
            inngest.Client(app_id="server", is_production=False),
            [],
            database=tmp_path / "big.db",
            durability="normal",
            http=http,
        )
        router.hosts["server"] = httpx.ASGITransport(app=create_app(engine))
        async with engine:
            synced = await http.put("http://app/api/inngest")
            assert synced.status_code == 200, synced.text
            [event_id] = await engine.send(inngest.Event(name="big/go"))
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=30)
    assert done.status == "Completed", done.error
    assert done.output == [1_000_000] * 10
    assert f"GET server/v0/runs/{run.id}/actions" in router.paths
    assert f"GET server/v0/runs/{run.id}/batch" in router.paths


async def test_self_hosted_mode_requires_keys_and_signs_calls(tmp_path: pathlib.Path) -> None:
    key = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client = inngest.Client(
            app_id="shop", is_production=True, signing_key=key, api_base_url="http://server"
        )
        _, functions = shop()
        router.hosts["app"] = httpx.ASGITransport(app=serve(client, functions, http=http))
        engine = Engine(
            inngest.Client(app_id="server", is_production=True),
            [],
            database=tmp_path / "prod.db",
            durability="normal",
            signing_key=key,
            http=http,
        )
        app = create_app(engine, dev=False, event_keys=frozenset({"ek-1"}), signing_key=key)
        router.hosts["server"] = httpx.ASGITransport(app=app)
        async with engine:
            unauthenticated = await http.post("http://server/fn/register", content=b"{}")
            assert unauthenticated.status_code == 401
            assert (await http.get("http://server/v1/runs/x")).status_code == 401
            synced = await http.put(
                "http://app/api/inngest", headers={"x-inngest-server-kind": "cloud"}
            )
            assert synced.status_code == 200, synced.text
            body = orjson.dumps({"name": "shop/order", "data": {"qty": 2}})
            assert (await http.post("http://server/e/wrong", content=body)).status_code == 401
            sent = await http.post("http://server/e/ek-1", content=body)
            [event_id] = sent.json()["ids"]
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=10)
            assert done.status == "Completed", done.error
            bearer = {"authorization": f"Bearer {signing.hashed_key(key)}"}
            answer = await http.get(f"http://server/v1/runs/{run.id}", headers=bearer)
            assert answer.json()["data"]["output"] == {"total": 6, "steps": ["packed", "billed"]}


async def test_a_restarted_server_serves_synced_apps_before_they_sync_again(
    tmp_path: pathlib.Path,
) -> None:
    router = HostRouter()
    async with httpx.AsyncClient(transport=router) as http:
        client, functions = shop()
        router.hosts["app"] = httpx.ASGITransport(app=serve(client, functions, http=http))

        def server() -> Engine:
            return router.server(tmp_path, http)

        async with server():
            synced = await http.put(
                "http://app/api/inngest", headers={"x-inngest-server-kind": "dev"}
            )
            assert synced.status_code == 200, synced.text
        async with server() as engine:  # no sync this time
            listed = (await http.get("http://server/v1/apps/shop/functions")).json()["data"]
            assert [f["id"] for f in listed["functions"]] == ["shop-order"]
            [event_id] = await engine.send(inngest.Event(name="shop/order", data={"qty": 2}))
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=10)
            assert done.status == "Completed", done.error
            assert done.output == {"total": 6, "steps": ["packed", "billed"]}
            removed = await http.delete(
                "http://server/fn/remove", params={"url": "http://app/api/inngest"}
            )
            assert removed.status_code == 200
        async with server():  # a removed app stays removed
            gone = await http.get("http://server/v1/apps/shop/functions")
            assert gone.status_code == 404
