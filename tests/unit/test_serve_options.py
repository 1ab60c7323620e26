"""The reference's serve options, through every adapter (FastAPI, Flask, Django, bare ASGI,
Tornado): ``serve_origin`` / ``serve_path`` / ``public_path`` decide the URL an app registers
(and where it is mounted), ``enable_unauthed_sync`` whether an unsigned sync is accepted in
cloud mode; then ``ctx.job_id`` / ``ctx.request_id``, and the adapters that cannot stream
saying so (streaming itself: ``test_serve_streaming.py``). Each adapter runs in memory, or on
a loopback socket for Tornado; the server's ``/fn/register`` is a mock that records what the
app registers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import fastapi
import flask
import httpx
import orjson
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import URLPattern, clear_url_caches

import mainspring as inngest
import mainspring.django
import mainspring.fast_api
import mainspring.flask
import mainspring.tornado
from mainspring.protocol import signing, wire
from mainspring.protocol.messages import CallContext, CallRequest
from mainspring.sdk.serve import asgi, handler
from mainspring.sdk.serve import django as django_adapter
from mainspring.sdk.serve import fastapi as fastapi_adapter
from mainspring.sdk.serve import flask as flask_adapter
from mainspring.sdk.serve import tornado as tornado_adapter
from tests.django_support import configure as configure_django

configure_django(__name__)

#: This module is the Django URLconf of its tests; each test puts its pattern here.
urlpatterns: list[URLPattern] = []

KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
ADAPTERS = ["fastapi", "asgi", "flask", "django", "tornado"]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


Call = Callable[[str, str, bytes, Mapping[str, str]], Awaitable[Answer]]


@dataclasses.dataclass(frozen=True, slots=True)
class Mounted:
    call: Call
    origin: str  # the scheme and host the test client's requests come in on


def _lower(headers: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in headers.items()}


def _asgi_call(app: Any) -> Call:
    async def call(method: str, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.request(method, target, content=body, headers=dict(headers))
        return Answer(answer.status_code, _lower(answer.headers), answer.content)

    return call


def mock_server(bodies: list[dict[str, Any]]) -> httpx.AsyncClient:
    """A server whose ``/fn/register`` answers 200 and keeps each body in ``bodies``."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/fn/register"
        bodies.append(orjson.loads(request.content))
        return httpx.Response(200, json={"ok": True})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The bodies the served apps POST to ``/fn/register`` (every adapter's handler gets
    the mock server)."""
    bodies: list[dict[str, Any]] = []

    class Recording(handler.ServeHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, http=mock_server(bodies), **kwargs)

    for module in (fastapi_adapter, asgi, flask_adapter, django_adapter, tornado_adapter):
        monkeypatch.setattr(module, "ServeHandler", Recording)
    return bodies


@pytest.fixture(params=ADAPTERS)
async def mount(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Mounted]]:
    """``mount(client, functions, **options)`` with one adapter."""
    name: str = request.param
    servers: list[tornado.httpserver.HTTPServer] = []

    def mounted(client: inngest.Client, functions: list[Any], **options: Any) -> Mounted:
        if name == "fastapi":
            app = fastapi.FastAPI()
            mainspring.fast_api.serve(app, client, functions, **options)
            return Mounted(_asgi_call(app), "http://testserver")
        if name == "asgi":
            return Mounted(
                _asgi_call(asgi.serve(client, functions, **options)), "http://testserver"
            )
        if name == "flask":
            flask_app = flask.Flask(__name__)
            mainspring.flask.serve(flask_app, client, functions, **options)
            test = flask_app.test_client()

            async def flask_call(m: str, t: str, b: bytes, h: Mapping[str, str]) -> Answer:
                # Flask's view runs asyncio.run: never on this test's event loop.
                got = await asyncio.to_thread(test.open, t, method=m, data=b, headers=dict(h))
                return Answer(got.status_code, _lower(got.headers), got.get_data())

            return Mounted(flask_call, "http://localhost")
        if name == "django":
            urlpatterns[:] = [mainspring.django.serve(client, functions, **options)]
            clear_url_caches()
            test_client = DjangoClient(enforce_csrf_checks=True)

            async def django_call(m: str, t: str, b: bytes, h: Mapping[str, str]) -> Answer:
                got = await asyncio.to_thread(
                    test_client.generic, m, t, data=b, content_type="text/plain", headers=dict(h)
                )
                return Answer(got.status_code, _lower(got.headers), got.content)

            return Mounted(django_call, "http://testserver")
        # A real Tornado server on this test's event loop, with XSRF checks on.
        tornado_app = tornado.web.Application(xsrf_cookies=True)
        mainspring.tornado.serve(tornado_app, client, functions, **options)
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado_app)
        server.add_sockets([sock])
        servers.append(server)
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"

        async def tornado_call(m: str, t: str, b: bytes, h: Mapping[str, str]) -> Answer:
            async with httpx.AsyncClient(base_url=origin) as http:
                got = await http.request(m, t, content=b, headers=dict(h))
            return Answer(got.status_code, _lower(got.headers), got.content)

        return Mounted(tornado_call, origin)

    if name == "django":
        with override_settings(ROOT_URLCONF=__name__):
            yield mounted
        urlpatterns.clear()
        clear_url_caches()
    else:
        yield mounted
    for server in servers:
        server.stop()
        await server.close_all_connections()


def app(**client_options: Any) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    options: dict[str, Any] = {"is_production": False, "api_base_url": "http://server.test"}
    client = inngest.Client(app_id="shop", **(options | client_options))

    @client.create_function(fn_id="ids", trigger=inngest.TriggerEvent(event="go"))
    async def ids(ctx: inngest.Context) -> list[str | None]:
        return [ctx.job_id, ctx.request_id]

    @client.create_function(fn_id="ids-sync", trigger=inngest.TriggerEvent(event="go"))
    def ids_sync(ctx: inngest.ContextSync) -> list[str | None]:
        return [ctx.job_id, ctx.request_id]

    return client, [ids, ids_sync]


# -- the URL the app registers -------------------------------------------------------------

URL_CASES = [
    # (options, environment, the route, the registered URL with {o} the request's origin)
    ({}, {}, "/api/inngest", "{o}/api/inngest"),
    (
        {"serve_origin": "https://shop.example"},
        {},
        "/api/inngest",
        "https://shop.example/api/inngest",
    ),
    (
        {"serve_origin": "shop.example:8443"},
        {},
        "/api/inngest",
        "https://shop.example:8443/api/inngest",
    ),
    ({"serve_path": "/hooks/durable"}, {}, "/hooks/durable", "{o}/hooks/durable"),
    (
        {"serve_path": "/internal/inngest", "public_path": "/public/inngest"},
        {},
        "/internal/inngest",
        "{o}/public/inngest",
    ),
    (
        {},
        {"INNGEST_SERVE_ORIGIN": "http://env.example:81", "INNGEST_SERVE_PATH": "/env/inngest"},
        "/env/inngest",
        "http://env.example:81/env/inngest",
    ),
    (
        {"serve_origin": "https://arg.example", "serve_path": "/arg/inngest"},
        {"INNGEST_SERVE_ORIGIN": "http://env.example", "INNGEST_SERVE_PATH": "/env/inngest"},
        "/arg/inngest",
        "https://arg.example/arg/inngest",
    ),
]


@pytest.mark.parametrize(("options", "environ", "route", "url"), URL_CASES)
async def test_the_registered_url(
    mount: Callable[..., Mounted],
    registered: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, str],
    environ: dict[str, str],
    route: str,
    url: str,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    client, functions = app()
    served = mount(client, functions, **options)
    answer = await served.call("PUT", route, b"", {})
    assert answer.status == 200, answer.body
    [body] = registered
    expected = url.format(o=served.origin)
    assert body["url"] == expected
    assert body["functions"][0]["steps"]["step"]["runtime"]["url"].startswith(expected + "?fnId=")


# -- unsigned syncs ------------------------------------------------------------------------


async def test_unauthed_sync_off_refuses_an_unsigned_sync(
    mount: Callable[..., Mounted], registered: list[dict[str, Any]]
) -> None:
    client, functions = app(is_production=True, signing_key=KEY)
    served = mount(client, functions, enable_unauthed_sync=False)
    refused = await served.call("PUT", "/api/inngest", b"", {})
    assert refused.status == 401
    assert refused.json()["code"] == "sig_verification_failed"
    assert "enable_unauthed_sync" in refused.json()["message"]
    forged = {"x-inngest-signature": signing.sign(b"", "signkey-test-00", at=int(time.time()))}
    assert (await served.call("PUT", "/api/inngest", b"", forged)).status == 401
    assert registered == []
    signed = {"x-inngest-signature": signing.sign(b"", KEY, at=int(time.time()))}
    assert (await served.call("PUT", "/api/inngest", b"", signed)).status == 200
    assert len(registered) == 1


@pytest.mark.parametrize(
    ("environ", "argument", "dev", "status"),
    [
        ({}, None, False, 200),  # the reference's default: on
        ({"INNGEST_ENABLE_UNAUTHED_SYNC": "false"}, None, False, 401),
        ({"INNGEST_ENABLE_UNAUTHED_SYNC": "false"}, True, False, 200),  # the argument wins
        ({}, False, True, 200),  # dev mode checks no signature at all
    ],
)
async def test_unauthed_sync_default_variable_and_dev_mode(
    registered: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    argument: bool | None,
    dev: bool,
    status: int,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    client, functions = app(is_production=not dev, signing_key=KEY)
    served = handler.ServeHandler(
        client, functions, enable_unauthed_sync=argument, http=mock_server(registered)
    )
    request = handler.ServeRequest("PUT", "http://shop.example/api/inngest", {}, b"")
    assert (await served.handle(request)).status == status
    assert len(registered) == (status == 200)


# -- ctx.job_id and ctx.request_id ---------------------------------------------------------


def call_body(fn_id: str, *, job_id: str = "", request_id: str = "") -> bytes:
    event = {"name": "go", "data": {}, "id": "e1", "ts": 1}
    ctx = CallContext(run_id="r1", job_id=job_id, request_id=request_id)
    return wire.request_to_wire(CallRequest(fn_id, event, [event], {}, ctx))


@pytest.mark.parametrize("fn_id", ["shop-ids", "shop-ids-sync"])
@pytest.mark.parametrize(
    ("headers", "in_body", "expected"),
    [
        # The reference's server sends them as headers; they win over the body's.
        ({"x-inngest-job-id": "job-h", "x-request-id": "req-h"}, True, ["job-h", "req-h"]),
        ({}, True, ["job-b", "req-b"]),
        ({}, False, [None, None]),
    ],
)
async def test_job_and_request_ids_come_from_the_call(
    fn_id: str, headers: dict[str, str], in_body: bool, expected: list[str | None]
) -> None:
    client, functions = app()
    served = handler.ServeHandler(client, functions)
    ids = {"job_id": "job-b", "request_id": "req-b"} if in_body else {}
    body = call_body(fn_id, **ids)
    url = f"http://shop/api/inngest?fnId={fn_id}&stepId=step"
    answer = await served.handle(handler.ServeRequest("POST", url, headers, body))
    assert (answer.status, orjson.loads(answer.body)) == (200, expected)


# -- streaming, where an adapter cannot -------------------------------------------------


@pytest.mark.parametrize("name", ["flask", "django", "tornado"])
def test_adapters_that_cannot_stream_say_so(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("INNGEST_STREAMING", "force")
    client, functions = app()
    with caplog.at_level(logging.WARNING, logger="mainspring"):
        if name == "flask":
            mainspring.flask.serve(flask.Flask(__name__), client, functions)
        elif name == "django":
            mainspring.django.serve(client, functions)
        else:
            mainspring.tornado.serve(tornado.web.Application(), client, functions)
    assert f"INNGEST_STREAMING=force is not supported by the {name} adapter" in caplog.text
