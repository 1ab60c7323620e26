"""A dev server that talks: run lines, retries shown on REST, apps of the other kind, events
that start nothing, and a send to no server."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.engine.clock import ManualClock
from mainspring.engine.engine import Engine
from mainspring.engine.unit import Unit
from mainspring.sdk import sending
from mainspring.sdk.serve.asgi import serve
from mainspring.sdk.serve.handler import ServeHandler, ServeRequest
from mainspring.server.app import create_app
from mainspring.server.poll import poll_apps

RUNS = "mainspring.runs"


def _client() -> inngest.Client:
    return inngest.Client(app_id="talk", is_production=False)


def _flaky(client: inngest.Client, failures: int, *, retries: int = 3) -> inngest.Function[Any]:
    """A function whose step ``save`` raises its first ``failures`` attempts."""
    calls = {"n": 0}

    def save() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ValueError(f"database is down (call {calls['n']})")
        return "saved"

    @client.create_function(
        fn_id="flaky", trigger=inngest.TriggerEvent(event="talk/go"), retries=retries
    )
    async def flaky(ctx: inngest.Context) -> str:
        return await ctx.step.run("save", save)

    return flaky


def _lines(caplog: pytest.LogCaptureFixture, name: str = RUNS) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def _until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result or loop.time() > deadline:
            return result
        await asyncio.sleep(0.02)


# -- 1. run lines ----------------------------------------------------------------------


async def test_a_run_says_it_started_failed_an_attempt_with_its_traceback_and_finished(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client()
    engine = Engine(client, [_flaky(client, 1)], database=tmp_path / "r.db", retry_backoff=0.01)
    with caplog.at_level(logging.INFO, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/go"))
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed"
    lines = _lines(caplog)
    assert [r.levelno for r in lines] == [logging.INFO, logging.WARNING, logging.INFO]
    started, failed, finished = (r.getMessage() for r in lines)
    assert started == f"run {run.id} started: talk-flaky (event 'talk/go')"
    assert failed.startswith(
        f"run {run.id}: step 'save' of talk-flaky failed (attempt 1 of 4; retrying in "
    )
    assert "ValueError: database is down (call 1)" in failed
    # The traceback the SDK sent: the user's frame and the line that raised.
    assert "raise ValueError(f\"database is down (call {calls['n']})\")" in failed
    assert "in save" in failed
    assert finished.startswith(f"run {run.id} completed: talk-flaky in ")


async def test_a_run_its_first_call_finishes_gets_one_line(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started and completed in one unit (a one-step run): the finish line alone, naming
    the event as the start line would, not two lines for one moment."""
    client = _client()

    @client.create_function(fn_id="quick", trigger=inngest.TriggerEvent(event="talk/quick"))
    async def quick(ctx: inngest.Context) -> int:
        return await ctx.step.run("only", lambda: 1)

    engine = Engine(client, [quick], database=tmp_path / "q.db")
    with caplog.at_level(logging.INFO, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/quick"))
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed"
    [line] = [r.getMessage() for r in _lines(caplog)]
    assert line.startswith(f"run {run.id} completed: talk-quick (event 'talk/quick') in ")


async def test_a_failed_run_logs_a_warning_and_start_mode_leaves_the_stack_out(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client()

    @client.create_function(
        fn_id="broken", trigger=inngest.TriggerEvent(event="talk/go"), retries=0
    )
    async def broken(ctx: inngest.Context) -> None:
        raise KeyError("no such order")

    engine = Engine(client, [broken], database=tmp_path / "f.db")
    create_app(engine, dev=False, event_keys=frozenset({"ek"}))  # as `mainspring start`
    assert engine.run_log.tracebacks is False
    with caplog.at_level(logging.INFO, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/go"))
            [run] = await engine.runs(event_id)
            await engine.wait(run.id, timeout=10)
    *_, last = _lines(caplog)
    assert last.levelno == logging.WARNING
    # Its first call ended it: the finish line names the event the start line would have.
    pattern = (
        rf"run {run.id} failed: talk-broken \(event 'talk/go'\) in \d+(\.\d)? m?s: "
        "KeyError: 'no such order'"
    )
    assert re.fullmatch(pattern, last.getMessage()), last.getMessage()
    assert "raise KeyError" not in last.getMessage()

    # The same run in dev mode carries the stack.
    caplog.clear()
    engine = Engine(client, [broken], database=tmp_path / "g.db")
    create_app(engine, dev=True)
    with caplog.at_level(logging.INFO, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/go"))
            [run] = await engine.runs(event_id)
            await engine.wait(run.id, timeout=10)
    *_, last = _lines(caplog)
    assert 'raise KeyError("no such order")' in last.getMessage()


async def test_a_unit_that_rolls_back_logs_nothing(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The unit recording the run's end fails once (a disk error at commit): the engine
    retries the job, and the run's end is said once, by the unit that committed."""
    client = _client()
    engine = Engine(client, [_flaky(client, 0)], database=tmp_path / "u.db")
    store = engine._store
    original = store.transact
    broke: list[str] = []

    async def flaky_transact(unit: Callable[[Any], Any]) -> Any:
        def failing(tx: Any) -> Any:
            result = unit(tx)
            if isinstance(result, Unit) and result.finished is not None and not broke:
                broke.append(result.run.run_id)
                raise OSError("disk I/O error")
            return result

        return await original(failing)

    store.transact = flaky_transact  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/go"))
            [run] = await engine.runs(event_id)
            done = await engine.wait(run.id, timeout=10)
    assert done.status == "Completed"
    assert broke == [run.id]
    messages = [r.getMessage() for r in _lines(caplog)]
    assert sum("completed" in m for m in messages) == 1, messages
    # Started and completed in the unit that committed: its one line says both.
    assert sum("(event 'talk/go')" in m for m in messages) == 1, messages
    assert not any("started" in m for m in messages), messages


async def test_no_line_is_built_when_the_logger_is_off(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mainspring.engine import runlog

    built: list[object] = []

    def no(*args: object, **_kwargs: object) -> str:
        built.append(args)
        return ""

    monkeypatch.setattr(runlog, "_error_text", no)
    monkeypatch.setattr(runlog, "_duration", no)
    client = _client()
    engine = Engine(client, [_flaky(client, 1)], database=tmp_path / "o.db", retry_backoff=0.01)
    with caplog.at_level(logging.ERROR, logger=RUNS):
        async with engine:
            [event_id] = await engine.send(inngest.Event(name="talk/go"))
            [run] = await engine.runs(event_id)
            assert (await engine.wait(run.id, timeout=10)).status == "Completed"
    assert _lines(caplog) == []
    assert built == [], "formatted lines nobody logs"


# -- 1. last_error on REST while a retry is pending ---------------------------------------


async def test_a_retrying_run_shows_its_last_error_on_rest(tmp_path: pathlib.Path) -> None:
    client = _client()
    engine = Engine(client, [_flaky(client, 99)], database=tmp_path / "l.db", retry_backoff=3600)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        [event_id] = await engine.send(inngest.Event(name="talk/go"))
        [run] = await engine.runs(event_id)

        async def shown() -> dict[str, Any] | None:
            answer = await http.get(f"/v1/runs/{run.id}")
            data: dict[str, Any] = answer.json()["data"]
            return data if data["last_error"] is not None else None

        data = await _until(shown)
        assert data is not None, "no last_error while the retry waits"
        assert data["status"] == "Running"
        assert data["error"] is None
        last = data["last_error"]
        assert last["error"]["name"] == "ValueError"
        assert last["error"]["message"] == "database is down (call 1)"
        assert "raise ValueError" in last["error"]["stack"]
        assert last["step"] == "save"
        assert last["attempt"] == 0
        assert last["next_attempt"] == 1
        assert 3_590_000 <= last["next_attempt_at"] - last["failed_at"] <= 3_610_000
        # The event's runs say the same.
        [listed] = (await http.get(f"/v1/events/{event_id}/runs")).json()["data"]
        assert listed["last_error"] == last
        # A finished run has none.
        await engine.cancel(run.id)
        after = (await http.get(f"/v1/runs/{run.id}")).json()["data"]
        assert after["status"] == "Cancelled"
        assert after["last_error"] is None


# -- 2. an app of the other kind -------------------------------------------------------


def _cloud_app() -> httpx.ASGITransport:
    client = inngest.Client(app_id="cloudy", is_production=True, signing_key="signkey-prod-00ff")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="x"))
    async def f(ctx: inngest.Context) -> None:
        return None

    return httpx.ASGITransport(app=serve(client, [f]))


async def _poll_for(http: httpx.AsyncClient, seconds: float) -> None:
    task = asyncio.create_task(
        poll_apps(["http://app/api/inngest"], interval=0.01, poll=True, dev=True, http=http)
    )
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_cloud_mode_app_is_told_the_fix_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Our SDK in cloud mode: its refusal names the fix.
    async with httpx.AsyncClient(transport=_cloud_app()) as http:
        answer = await http.put("http://app/api/inngest", headers={"x-inngest-server-kind": "dev"})
        assert answer.status_code == 400
        refusal = answer.json()
        assert refusal["code"] == "server_kind_mismatch"
        assert "INNGEST_DEV=1" in refusal["message"]
        assert "is_production=False" in refusal["message"]
        # The dev server polling it: one line for many rounds, naming the fix.
        with caplog.at_level(logging.INFO, logger="mainspring.cli"):
            await _poll_for(http, 0.3)
    said = [r.getMessage() for r in caplog.records if "did not sync" in r.getMessage()]
    assert len(said) == 1, said
    assert "set INNGEST_DEV=1 in the app's environment" in said[0]
    assert "inngest.Inngest(..., is_production=False)" in said[0]


async def test_the_official_sdks_refusal_gets_the_same_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The official SDK answers 400 "Sync rejected since it's from a Dev Server but
    expected Cloud", with the server kind it expects in its headers."""

    def official(request: httpx.Request) -> httpx.Response:
        body = {
            "code": "server_kind_mismatch",
            "message": "Sync rejected since it's from a Dev Server but expected Cloud",
        }
        return httpx.Response(400, json=body, headers={"x-inngest-expected-server-kind": "cloud"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(official)) as http:
        with caplog.at_level(logging.INFO, logger="mainspring.cli"):
            await _poll_for(http, 0.2)
    said = [r.getMessage() for r in caplog.records if "did not sync" in r.getMessage()]
    assert len(said) == 1, said
    assert "INNGEST_DEV=1" in said[0]


async def test_a_registration_expecting_cloud_names_the_fix_and_is_logged_once(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(_client(), [], database=tmp_path / "k.db")
    transport = httpx.ASGITransport(app=create_app(engine))
    headers = {"x-inngest-expected-server-kind": "cloud", "x-inngest-sdk": "py:v0.5.19"}
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        with caplog.at_level(logging.INFO, logger="mainspring.server"):
            for _ in range(3):
                answer = await http.post("/fn/register", content=b"{}", headers=headers)
                assert answer.status_code == 400
                assert "Expected server kind cloud, got dev" in answer.json()["error"]
                assert "INNGEST_DEV=1" in answer.json()["error"]
    said = [r for r in caplog.records if "could not register" in r.getMessage()]
    assert len(said) == 1


async def test_a_dev_mode_app_asked_by_a_cloud_server_is_told_the_other_fix() -> None:
    client = _client()

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="x"))
    async def f(ctx: inngest.Context) -> None:
        return None

    handler = ServeHandler(client, [f])
    url = "http://app/api/inngest"
    answer = await handler.handle(ServeRequest("PUT", url, {"x-inngest-server-kind": "cloud"}, b""))
    message = orjson.loads(answer.body)["message"]
    assert "unset INNGEST_DEV" in message


# -- 3. events that start nothing ------------------------------------------------------


async def test_an_event_no_function_listens_to_is_noticed_once_a_minute_and_shown(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client()
    clock = ManualClock()
    engine = Engine(client, [_flaky(client, 0)], database=tmp_path / "n.db", clock=clock)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        with caplog.at_level(logging.INFO, logger="mainspring.events"):
            ids = [await engine.send(inngest.Event(name="talk/typo")) for _ in range(3)]
            [stray] = ids[0]
            assert len(_lines(caplog, "mainspring.events")) == 1
            clock.advance(61)
            await engine.send(inngest.Event(name="talk/typo"))
            [matched] = await engine.send(inngest.Event(name="talk/go"))
        notices = [r.getMessage() for r in _lines(caplog, "mainspring.events")]
        assert len(notices) == 2, notices
        assert notices[0] == (
            f"event 'talk/typo' ({stray}) started nothing: no function is triggered by 'talk/typo'"
        )
        assert (await http.get(f"/v1/events/{stray}/runs")).json()["data"] == []
        shown = (await http.get(f"/v1/events/{stray}")).json()["data"]
        assert shown["note"] == "no function is triggered by 'talk/typo'"
        started = (await http.get(f"/v1/events/{matched}")).json()["data"]
        assert started["note"] is None


# -- 4. a send to no server ------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("how", ["send", "send_sync"])
async def test_a_send_to_no_server_names_the_url_and_mainspring_dev(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending, "_backoff", lambda attempt: 0.0)
    url = f"http://127.0.0.1:{_closed_port()}"
    client = inngest.Client(
        app_id="nobody", is_production=False, event_api_base_url=url, event_key="secret-key"
    )
    event = inngest.Event(name="talk/go")
    sent = client.send(event) if how == "send" else asyncio.to_thread(client.send_sync, event)
    with pytest.raises(inngest.SendEventsError) as caught:
        await sent
    message = str(caught.value)
    assert f"could not reach the event API at {url}/e/<event key>" in message
    assert "`mainspring dev`" in message
    assert "INNGEST_BASE_URL" in message
    assert "secret-key" not in message
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert cause.__traceback__ is None
    assert cause.__cause__ is None
