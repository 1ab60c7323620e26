"""The FastAPI, Flask and Django adapters serve the same protocol as the bare handler.

One scenario, written once against a tiny "send a request, read the answer" interface,
runs through each framework's own test client, for an async and a sync function: GET
introspection, a parallel discovery call, a targeted step, the final call, a PUT refused for
the wrong server kind, and a bad request. Then a slow sync step holds one request while
another goes through: on a threaded WSGI server for Flask and Django, on one event loop for
FastAPI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastapi
import flask
import httpx
import orjson
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import URLPattern, clear_url_caches
from werkzeug.serving import make_server

import mainspring as inngest
import mainspring.django
import mainspring.fast_api
import mainspring.flask
from mainspring.protocol import wire
from mainspring.protocol.messages import CallContext, CallRequest
from mainspring.protocol.step_ids import hash_step_id
from tests.django_support import configure as configure_django

configure_django(__name__)

#: This module is the Django URLconf of its tests; each test puts its pattern here.
urlpatterns: list[URLPattern] = []

PATH = "/api/inngest"


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


#: ``call(method, path_and_query, body, headers)`` through one framework's test client.
Call = Callable[[str, str, bytes, Mapping[str, str]], Answer]
#: Serves ``functions`` with one adapter (``serve_path`` passed through) and returns a Call.
Mount = Callable[..., Call]


def _lower(headers: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in headers.items()}


def mount_fastapi(
    portal: BlockingPortal,
    client: inngest.Client,
    functions: list[inngest.Function[Any]],
    **options: Any,
) -> Call:
    app = fastapi.FastAPI()
    mainspring.fast_api.serve(app, client, functions, **options)

    async def request(method: str, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.request(method, target, content=body, headers=dict(headers))
        return Answer(answer.status_code, _lower(answer.headers), answer.content)

    def call(method: str, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        # One long-lived event loop (in a thread) serves every request, as a server's would.
        return portal.call(request, method, target, body, headers)

    return call


def mount_flask(
    client: inngest.Client, functions: list[inngest.Function[Any]], **options: Any
) -> Call:
    app = flask.Flask(__name__)
    mainspring.flask.serve(app, client, functions, **options)
    test = app.test_client()

    def call(method: str, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        answer = test.open(target, method=method, data=body, headers=dict(headers))
        return Answer(answer.status_code, _lower(answer.headers), answer.get_data())

    return call


def mount_django(
    client: inngest.Client, functions: list[inngest.Function[Any]], **options: Any
) -> Call:
    urlpatterns[:] = [mainspring.django.serve(client, functions, **options)]
    clear_url_caches()
    # CSRF checks on, as in production: the view must be exempt.
    test = DjangoClient(enforce_csrf_checks=True)

    def call(method: str, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        answer = test.generic(
            method, target, data=body, content_type="application/json", headers=dict(headers)
        )
        return Answer(answer.status_code, _lower(answer.headers), answer.content)

    return call


@pytest.fixture
def django_urlconf() -> Iterator[None]:
    """Route Django to this module's ``urlpatterns`` (whoever configured the settings)."""
    with override_settings(
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"]
    ):
        yield
    urlpatterns.clear()
    clear_url_caches()


@dataclasses.dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    framework: str  # its x-inngest-framework
    mount: Mount


@pytest.fixture(params=["fastapi", "flask", "django"])
def adapter(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    name: str = request.param
    if name == "fastapi":
        # TestClient wants httpx2 with this Starlette; its blocking portal is all we need.
        with start_blocking_portal() as portal:
            yield Adapter(name, "fast_api", functools.partial(mount_fastapi, portal))
    elif name == "flask":
        yield Adapter(name, "flask", mount_flask)
    else:
        request.getfixturevalue("django_urlconf")
        yield Adapter(name, "django", mount_django)


# -- the app -------------------------------------------------------------------------------


def build(kind: str) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    """An app with one function running steps ``a`` and ``b`` in a parallel group."""
    client = inngest.Client(app_id="shop", is_production=False)
    trigger = inngest.TriggerEvent(event="go")
    if kind == "async":

        @client.create_function(fn_id="pair", trigger=trigger)
        async def pair(ctx: inngest.Context) -> list[int]:
            a, b = await ctx.group.parallel(
                (lambda: ctx.step.run("a", lambda: 1), lambda: ctx.step.run("b", lambda: 2))
            )
            return [a, b]

        return client, [pair]

    @client.create_function(fn_id="pair", trigger=trigger)
    def pair_sync(ctx: inngest.ContextSync) -> list[int]:
        a, b = ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: 1), lambda: ctx.step.run("b", lambda: 2))
        )
        return [a, b]

    return client, [pair_sync]


def call_body(fn_id: str = "shop-pair", steps: dict[str, Any] | None = None) -> bytes:
    steps = steps or {}
    event = {"name": "go", "data": {}, "id": "e1", "ts": 1}
    return wire.request_to_wire(
        CallRequest(
            fn_id=fn_id,
            event=event,
            events=[event],
            steps=steps,
            ctx=CallContext(run_id="r1", attempt=0, max_attempts=3, stack=list(steps)),
        )
    )


# -- the scenario --------------------------------------------------------------------------


def run_scenario(call: Call, framework: str, path: str = PATH) -> None:
    def post(query: str, body: bytes) -> Answer:
        return call("POST", f"{path}?{query}", body, {"content-type": "application/json"})

    look = call("GET", path, b"", {})
    assert look.status == 200
    assert look.headers["x-inngest-sdk"].startswith("mainspring:v")
    assert look.headers["x-inngest-framework"] == framework
    assert look.headers["content-type"] == "application/json"
    assert look.json()["mode"] == "dev"
    assert look.json()["function_count"] == 1

    plan = post("fnId=shop-pair&stepId=step", call_body())
    assert plan.status == 206
    assert plan.headers["x-inngest-req-version"] == "2"
    assert [(op["op"], op["id"]) for op in plan.json()] == [
        ("StepPlanned", hash_step_id("a")),
        ("StepPlanned", hash_step_id("b")),
    ]

    run_a = post(f"fnId=shop-pair&stepId={hash_step_id('a')}", call_body())
    assert run_a.status == 206
    [op] = run_a.json()
    assert (op["op"], op["id"], op["data"]) == ("StepRun", hash_step_id("a"), 1)

    memos = {hash_step_id("a"): {"data": 1}, hash_step_id("b"): {"data": 2}}
    done = post("fnId=shop-pair&stepId=step", call_body(steps=memos))
    assert done.status == 200
    assert done.json() == [1, 2]

    # PUT reaches the handler (refused before any network call: wrong server kind).
    sync = call("PUT", path, b"", {"x-inngest-server-kind": "cloud"})
    assert sync.status == 400
    assert sync.json()["code"] == "server_kind_mismatch"

    bad = post("stepId=step", call_body())
    assert bad.status == 400
    assert bad.json()["code"] == "missing_fn_id"
    assert bad.headers["x-inngest-no-retry"] == "true"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_the_protocol_through_each_framework(adapter: Adapter, kind: str) -> None:
    client, functions = build(kind)
    run_scenario(adapter.mount(client, functions), adapter.framework)


def test_serve_path_moves_the_route(adapter: Adapter) -> None:
    client, functions = build("async")
    call = adapter.mount(client, functions, serve_path="/hooks/durable")
    assert call("GET", PATH, b"", {}).status == 404
    run_scenario(call, adapter.framework, path="/hooks/durable")


def test_reference_module_names() -> None:
    from mainspring.sdk.serve import django as django_adapter
    from mainspring.sdk.serve import fastapi as fastapi_adapter
    from mainspring.sdk.serve import flask as flask_adapter

    assert mainspring.fast_api.serve is fastapi_adapter.serve
    assert mainspring.flask.serve is flask_adapter.serve
    assert mainspring.django.serve is django_adapter.serve


def test_the_django_pattern_is_a_csrf_exempt_view(django_urlconf: None) -> None:
    for kind, is_async in [("async", True), ("sync", False)]:
        client, functions = build(kind)
        pattern = mainspring.django.serve(client, functions)
        assert isinstance(pattern, URLPattern)
        assert str(pattern.pattern) == "api/inngest"
        assert pattern.name == "mainspring"
        assert getattr(pattern.callback, "csrf_exempt", False)
        assert asyncio.iscoroutinefunction(pattern.callback) is is_async


# -- a slow sync step does not hold other requests up ---------------------------------------


class Gate:
    """A step that signals it started, then waits until the test lets it finish."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def step(self) -> str:
        self.entered.set()
        assert self.release.wait(10), "the gate was never released"
        return "done"


def build_slow(gate: Gate) -> tuple[inngest.Client, list[inngest.Function[Any]]]:
    client = inngest.Client(app_id="shop", is_production=False)

    @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="go"))
    def slow(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("wait", gate.step)

    return client, [slow]


SLOW_QUERY = f"fnId=shop-slow&stepId={hash_step_id('wait')}"


def check_slow_answer(answer: httpx.Response) -> None:
    assert answer.status_code == 206
    [op] = answer.json()
    assert (op["op"], op["data"]) == ("StepRun", "done")


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_a_slow_step_leaves_a_threaded_wsgi_server_free(
    framework: str, request: pytest.FixtureRequest
) -> None:
    gate = Gate()
    client, functions = build_slow(gate)
    app: Any
    if framework == "flask":
        app = flask.Flask(__name__)
        mainspring.flask.serve(app, client, functions)
    else:
        request.getfixturevalue("django_urlconf")
        urlpatterns[:] = [mainspring.django.serve(client, functions)]
        clear_url_caches()
        app = WSGIHandler()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_port}{PATH}"
    answers: list[httpx.Response] = []
    try:
        with httpx.Client(timeout=15) as http:
            slow = threading.Thread(
                target=lambda: answers.append(
                    http.post(f"{base}?{SLOW_QUERY}", content=call_body("shop-slow"))
                )
            )
            slow.start()
            assert gate.entered.wait(10)
            assert http.get(base).status_code == 200  # answered while the step waits
            assert slow.is_alive()
            gate.release.set()
            slow.join(15)
    finally:
        gate.release.set()
        server.shutdown()
        serving.join(5)
    [answer] = answers
    check_slow_answer(answer)


async def test_a_slow_step_leaves_the_fastapi_event_loop_free() -> None:
    gate = Gate()
    client, functions = build_slow(gate)
    app = fastapi.FastAPI()
    mainspring.fast_api.serve(app, client, functions)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            slow = asyncio.create_task(
                http.post(f"{PATH}?{SLOW_QUERY}", content=call_body("shop-slow"))
            )
            assert await asyncio.to_thread(gate.entered.wait, 10)
            assert (await http.get(PATH)).status_code == 200  # answered while the step waits
            assert not slow.done()
            gate.release.set()
            check_slow_answer(await slow)
    finally:
        gate.release.set()
