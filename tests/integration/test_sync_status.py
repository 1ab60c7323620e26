"""Each app URL's last sync and last failed attempt (``server/sync_status.py``), through the
real server: the poller and registrations write it, ``GET /v1/apps`` and the Apps page
show it (apps in memory over ASGI, the server's clock a manual one)."""

from __future__ import annotations

import asyncio
import html
import io
import pathlib
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

import mainspring as inngest
from mainspring.cli import render
from mainspring.engine.clock import ManualClock
from mainspring.engine.engine import Engine
from mainspring.sdk.serve.asgi import serve
from mainspring.server.app import create_app
from mainspring.server.kind_hints import DEV_FIX
from mainspring.server.poll import NOT_RUNNING_FIX, REGISTRATION_FIX, poll_apps
from mainspring.server.sync_status import SyncStatus

SHOP = "http://shop/api/inngest"
CLOUDY = "http://cloudy/api/inngest"
DOWN = "http://down/api/inngest"


class Hosts(httpx.AsyncBaseTransport):
    """Each request to the in-memory ASGI app of its host; a host in ``down`` refuses."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return await self.apps[host].handle_async_request(request)


def _app(app_id: str, *, dev: bool, http: httpx.AsyncClient) -> httpx.ASGITransport:
    client = inngest.Client(
        app_id=app_id,
        is_production=not dev,
        signing_key=None if dev else "signkey-prod-00ff",
        api_base_url="http://server",
    )

    @client.create_function(fn_id="order", trigger=inngest.TriggerEvent(event="shop/order"))
    async def order(ctx: inngest.Context) -> str:
        return "ok"

    return httpx.ASGITransport(app=serve(client, [order], http=http))


class World:
    def __init__(self, hosts: Hosts, http: httpx.AsyncClient, clock: ManualClock) -> None:
        self.hosts = hosts
        self.http = http
        self.clock = clock
        self.status: SyncStatus = SyncStatus()

    async def poll(self, urls: list[str], *, until: Callable[[], bool]) -> None:
        """The poller on ``urls`` (every 10 ms) until ``until()`` holds."""
        task = asyncio.create_task(
            poll_apps(urls, interval=0.01, poll=True, dev=True, http=self.http, status=self.status)
        )
        try:
            for _ in range(500):
                if until():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the poller never got there")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def apps(self) -> dict[str | None, dict[str, Any]]:
        answer = await self.http.get("http://server/v1/apps")
        assert answer.status_code == 200, answer.text
        return {app["url"]: app for app in answer.json()["data"]}

    async def apps_page(self) -> str:
        answer = await self.http.get("http://server/apps")
        assert answer.status_code == 200, answer.text
        return _text(answer.text)


def _text(page: str) -> str:
    """What a person reads of a page: its text, tags dropped, spaces collapsed."""
    body = page.split("<main>", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture
async def world(tmp_path: pathlib.Path) -> AsyncIterator[World]:
    hosts = Hosts()
    clock = ManualClock()
    async with httpx.AsyncClient(transport=hosts) as http:
        engine = Engine(
            inngest.Client(app_id="server", is_production=False),
            [],
            database=tmp_path / "server.db",
            clock=clock,
            http=http,
        )
        found = World(hosts, http, clock)
        found.status = SyncStatus(clock.now_ms)
        hosts.apps["server"] = httpx.ASGITransport(app=create_app(engine, sync_status=found.status))
        hosts.apps["shop"] = _app("shop", dev=True, http=http)
        hosts.apps["cloudy"] = _app("cloudy", dev=False, http=http)
        async with engine:
            yield found


async def test_a_polled_app_that_syncs_shows_when(world: World) -> None:
    await world.poll([SHOP], until=lambda: world.status.of(SHOP) is not None)
    [shop] = (await world.apps()).values()
    assert shop["name"] == "shop"
    assert shop["sdk"].startswith("py:v")
    assert shop["last_synced_at"] == world.clock.now_ms()
    assert shop["last_sync_error"] is None
    assert shop["sync_failing"] is False
    world.clock.advance(12)
    page = await world.apps_page()
    assert "shop http://shop/api/inngest py:v" in page
    assert "synced 12 s ago" in page
    assert "failed" not in page


async def test_a_u_url_that_does_not_answer_is_listed_as_never_synced_with_the_fix(
    world: World,
) -> None:
    await world.poll([DOWN], until=lambda: world.status.of(DOWN) is not None)
    world.clock.advance(3)
    down = (await world.apps())[DOWN]
    assert down["name"] is None
    assert down["last_synced_at"] is None
    assert down["sync_failing"] is True
    error = down["last_sync_error"]
    assert error["message"] == "no answer: All connection attempts failed"
    assert error["fix"] == NOT_RUNNING_FIX
    assert error["source"] == "poll"
    assert error["at"] == world.clock.now_ms() - 3000
    page = await world.apps_page()
    assert "never synced" in page
    assert (
        "last attempt 3 s ago failed (the server asked it to sync): "
        "no answer: All connection attempts failed Fix: is the app running" in page
    )
    # The page offers to ask it again (a -u URL), and a Resync says what happened.
    assert page.count("Resync") == 1


async def test_an_app_in_cloud_mode_shows_the_dev_fix_then_its_sync_once_fixed(
    world: World,
) -> None:
    await world.poll([CLOUDY], until=lambda: world.status.of(CLOUDY) is not None)
    cloudy = (await world.apps())[CLOUDY]
    assert cloudy["sync_failing"] is True
    assert cloudy["last_sync_error"]["message"].startswith("400 ")
    assert "server_kind_mismatch" in cloudy["last_sync_error"]["message"]
    assert cloudy["last_sync_error"]["fix"] == DEV_FIX
    page = await world.apps_page()
    assert "Fix: the app is in cloud mode and this is a dev server: set INNGEST_DEV=1" in page

    # The developer sets INNGEST_DEV=1 and restarts the app: the next round syncs it.
    world.clock.advance(5)
    world.hosts.apps["cloudy"] = _app("cloudy", dev=True, http=world.http)

    def synced() -> bool:
        sync = world.status.of(CLOUDY)
        return sync is not None and sync.synced_at is not None

    await world.poll([CLOUDY], until=synced)
    world.clock.advance(2)
    cloudy = (await world.apps())[CLOUDY]
    assert cloudy["name"] == "cloudy"
    assert cloudy["sync_failing"] is False
    assert cloudy["last_synced_at"] > cloudy["last_sync_error"]["at"]
    page = await world.apps_page()
    assert "synced 2 s ago" in page
    assert "earlier attempt 7 s ago failed" in page
    assert "last attempt" not in page


async def test_a_refused_registration_is_shown_under_the_url_its_body_names(
    world: World,
) -> None:
    body = {
        "url": "http://typo/api/inngest",
        "appName": "typo",
        "sdk": "py:v0.5.0",
        "functions": [{"id": "f", "name": "f", "triggers": [{"event": "x"}], "steps": {}}],
    }
    refused = await world.http.post("http://server/fn/register", content=orjson.dumps(body))
    assert refused.status_code == 400
    typo = (await world.apps())["http://typo/api/inngest"]
    assert typo["name"] is None
    assert typo["last_sync_error"]["source"] == "register"
    assert typo["last_sync_error"]["message"] == refused.json()["error"]
    assert typo["last_sync_error"]["fix"] == REGISTRATION_FIX
    page = await world.apps_page()
    assert "failed (its registration was refused): " + refused.json()["error"] in page
    # A registration that names no URL is only answered.
    assert (await world.http.post("http://server/fn/register", content=b"[]")).status_code == 400
    assert len(await world.apps()) == 1


async def test_a_registration_expecting_a_cloud_server_is_shown_with_the_fix(
    world: World,
) -> None:
    headers = {"x-inngest-expected-server-kind": "cloud"}
    body = orjson.dumps({"url": CLOUDY, "appName": "cloudy"})
    answer = await world.http.post("http://server/fn/register", content=body, headers=headers)
    assert answer.status_code == 400
    cloudy = (await world.apps())[CLOUDY]
    assert cloudy["last_sync_error"]["message"] == "Expected server kind cloud, got dev"
    assert cloudy["last_sync_error"]["fix"] == DEV_FIX


async def test_a_removed_app_is_forgotten_unless_u_named_it(world: World) -> None:
    assert (await world.http.put(SHOP)).status_code == 200  # it syncs on its own
    assert world.status.of(SHOP) is not None
    removed = await world.http.delete("http://server/fn/remove", params={"url": SHOP})
    assert removed.status_code == 200
    assert await world.apps() == {}
    # A -u URL stays listed (the poller asks it again), as never synced since.
    await world.poll([SHOP], until=lambda: world.status.of(SHOP) is not None)
    await world.http.delete("http://server/fn/remove", params={"url": SHOP})
    assert (await world.apps())[SHOP]["name"] is None


async def test_an_app_served_from_its_stored_registration_has_not_synced_since_the_start(
    tmp_path: pathlib.Path,
) -> None:
    hosts = Hosts()
    async with httpx.AsyncClient(transport=hosts) as http:
        hosts.apps["shop"] = _app("shop", dev=True, http=http)
        for round_ in range(2):  # the first server syncs the app, the second restarts
            engine = Engine(
                inngest.Client(app_id="server", is_production=False),
                [],
                database=tmp_path / "server.db",
                http=http,
            )
            hosts.apps["server"] = httpx.ASGITransport(app=create_app(engine))
            async with engine:
                if round_ == 0:
                    assert (await http.put(SHOP)).status_code == 200
                    continue
                [shop] = (await http.get("http://server/v1/apps")).json()["data"]
                assert shop["name"] == "shop"
                assert shop["last_synced_at"] is None
                page = _text((await http.get("http://server/apps")).text)
                assert "no sync since the server started" in page


async def test_resync_from_the_page_notes_its_failure(world: World) -> None:
    # The Resync button asks over the network: a loopback port nobody listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/api/inngest"
    world.status.expect([closed])
    page = (await world.http.get("http://server/apps")).text
    [csrf] = re.findall(r'name="csrf-token" content="([^"]+)"', page)
    answer = await world.http.post(
        "http://server/apps/resync",
        data={"csrf": csrf, "url": closed},
        headers={"origin": "http://server"},
    )
    assert answer.status_code == 303, answer.text
    [listed] = (await world.apps()).values()
    assert listed["url"] == closed
    assert listed["last_sync_error"]["source"] == "resync"
    assert listed["last_sync_error"]["fix"] == NOT_RUNNING_FIX
    assert "failed (Resync from this page): no answer" in await world.apps_page()


async def test_mainspring_apps_shows_the_failure_and_its_fix(world: World) -> None:
    await world.poll([CLOUDY], until=lambda: world.status.of(CLOUDY) is not None)
    out = Console(width=2000, file=io.StringIO(), no_color=True)
    out.print(render.apps_table(list((await world.apps()).values())))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert CLOUDY in text
    assert "server_kind_mismatch" in text
    assert "— fix: the app is in cloud mode and this is a dev server" in text
