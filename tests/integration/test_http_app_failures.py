"""Apps that fail over real HTTP: refused connections, garbage, hangs, malformed ops.

Every scenario runs an HTTP/1.1 server on loopback (:class:`LoopbackApp`) and an engine
calling it with the HTTP transport. The server either forwards a call to the SDK's real
serve handler or misbehaves on the calls a test picks. What must hold each time: the
failure is a retried attempt whose reason is in the run's history, the run's final
error says what went wrong, recorded steps are neither lost nor run again, and the engine
keeps serving other runs.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.records import StepAttempt
from mainspring.server.app import create_app
from tests.conftest import peek, run_to_end
from tests.integration.loopback_app import SDK, Answer, Call, LoopbackApp, Reply, running


def failed_calls(history: Sequence[StepAttempt]) -> list[str]:
    """The reasons of the failed function-level calls, in order."""
    return [h.error["message"] for h in history if h.op == FUNCTION_ERROR_OP and h.error]


async def until(condition: Callable[[], Awaitable[bool]], *, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def two_steps(
    app_id: str, *, retries: int
) -> tuple[inngest.Client, inngest.Function[Any], dict[str, int]]:
    """A function of two steps that counts how often each body runs."""
    client = inngest.Client(app_id=app_id, is_production=False)
    runs = {"one": 0, "two": 0}

    def step(name: str) -> Callable[[], str]:
        def body() -> str:
            runs[name] += 1
            return f"{name}-done"

        return body

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=retries)
    async def fn(ctx: inngest.Context) -> list[str]:
        return [await ctx.step.run("one", step("one")), await ctx.step.run("two", step("two"))]

    return client, fn, runs


async def assert_step_one_intact(engine: inngest.Engine, run_id: str) -> None:
    history = await engine.history(run_id)
    assert (history[0].user_id, history[0].op, history[0].output) == ("one", "StepRun", "one-done")
    state = await engine.run_state(run_id)
    assert state is not None
    assert {"data": "one-done"} in state[1].values()


# -- no answer at all ----------------------------------------------------------------------


async def test_refused_connections_are_recorded_attempts_and_fail_the_run(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, runs = two_steps("down", retries=2)
    async with running(tmp_path, client, [fn], listen=False) as (engine, app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        history = await engine.history(run.id)
    assert run.status == "Failed"
    assert run.error is not None
    assert "connection refused" in run.error["message"]
    assert f"127.0.0.1:{app.port}/api/inngest" in run.error["message"]
    reasons = failed_calls(history)
    assert len(reasons) == 3  # retries=2: every attempt, the last one included
    assert all("connection refused" in r and str(app.port) in r for r in reasons)
    assert [h.attempt for h in history] == [0, 1, 2]
    assert runs == {"one": 0, "two": 0}


async def test_an_app_that_comes_back_finishes_the_run_without_rerunning_steps(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, runs = two_steps("flaky", retries=20)

    async def down_after_first_call(app: LoopbackApp, n: int, call: Call) -> Answer:
        reply = await app.forward(call)
        if n == 1:
            app.stop_listening()  # step "one" is answered, then the app goes away
        return reply

    async with running(tmp_path, client, [fn], down_after_first_call, retry_backoff=0.05) as (
        engine,
        app,
    ):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)

        async def refused_twice() -> bool:
            return len(failed_calls(await engine.history(run.id))) >= 2

        await until(refused_twice)
        await app.start()
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.output == ["one-done", "two-done"]
    assert runs == {"one": 1, "two": 1}
    assert history[0].user_id == "one"
    assert history[-1].user_id == "two"
    refused = history[1:-1]
    assert len(refused) >= 2
    assert all(h.op == FUNCTION_ERROR_OP and h.step_id == "step@1" for h in refused)
    assert all("connection refused" in (h.error or {}).get("message", "") for h in refused)
    assert [h.attempt for h in refused] == list(range(len(refused)))


async def test_a_hanging_app_times_out_and_a_later_attempt_completes(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, runs = two_steps("slow", retries=2)

    async def hang_on_second_call(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 2:
            await asyncio.sleep(30)
        return await app.forward(call)

    started = time.monotonic()
    async with running(tmp_path, client, [fn], hang_on_second_call, call_timeout=0.3) as (
        engine,
        app,
    ):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert time.monotonic() - started < 3  # not the 30 s the app hangs
    assert runs == {"one": 1, "two": 1}
    [reason] = failed_calls(history)
    assert "timed out after 0.3 s" in reason
    assert app.url in reason
    assert [(h.user_id, h.op, h.attempt) for h in history] == [
        ("one", "StepRun", 0),
        ("", FUNCTION_ERROR_OP, 0),
        ("two", "StepRun", 1),
    ]


async def test_a_shared_client_with_a_short_default_does_not_cut_a_long_call(
    tmp_path: pathlib.Path,
) -> None:
    """``call_timeout``, not the shared client's own default, bounds a call."""
    client, fn, runs = two_steps("patient", retries=0)

    async def slow_first_call(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            await asyncio.sleep(0.4)
        return await app.forward(call)

    async with (
        httpx.AsyncClient(timeout=0.1) as http,
        running(tmp_path, client, [fn], slow_first_call, http=http, call_timeout=5) as (engine, _),
    ):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
    assert run.status == "Completed", run.error
    assert runs == {"one": 1, "two": 1}


# -- answers that are not an SDK's -----------------------------------------------------------

HTML = b"<html><body><h1>Internal Server Error</h1></body></html>"


@pytest.mark.parametrize(
    ("answer", "problems"),
    [
        pytest.param(
            Reply(200, b"<<garbage>>", SDK),
            ["HTTP 200 with an invalid body", "not valid JSON"],
            id="200-not-json",
        ),
        pytest.param(
            Reply(206, b'"ops?"', SDK),
            ["206 body: expected an array of opcode objects"],
            id="206-wrong-shape",
        ),
        pytest.param(
            Reply(206, b'[{"hello": "world"}]', SDK),
            ["ops[0].op: expected an opcode name"],
            id="206-op-without-name",
        ),
        pytest.param(
            Reply(200, b'{"ok": true}'),
            ["HTTP 200 without the X-Inngest-SDK header", "not an Inngest SDK"],
            id="no-sdk-header",
        ),
        pytest.param(
            Reply(500, HTML, {"content-type": "text/html"}),
            ["HTTP 500 without the X-Inngest-SDK header", "Internal Server Error"],
            id="500-html",
        ),
        pytest.param(
            Reply(404, b"Not Found"),
            ["HTTP 404 without the X-Inngest-SDK header", "Not Found"],
            id="404",
        ),
        pytest.param(b"SPLAT\r\n\r\n", ["did not answer with valid HTTP"], id="not-http"),
        pytest.param(None, ["did not answer with valid HTTP", "disconnected"], id="hang-up"),
    ],
)
async def test_answers_that_are_not_an_sdks_are_retried_and_named(
    tmp_path: pathlib.Path, answer: Answer, problems: list[str]
) -> None:
    client, fn, runs = two_steps("garbled", retries=1)

    async def garble_after_step_one(app: LoopbackApp, n: int, call: Call) -> Answer:
        return await app.forward(call) if n == 1 else answer

    async with running(tmp_path, client, [fn], garble_after_step_one) as (engine, app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        reasons = failed_calls(await engine.history(run.id))
        await assert_step_one_intact(engine, run.id)
    assert run.status == "Failed"
    assert run.error is not None
    assert len(app.calls) == 3  # step one, then both attempts of the discovery call
    assert len(reasons) == 2
    for text in [*reasons, run.error["message"]]:
        for problem in problems:
            assert problem in text, text
        assert app.url in text
        assert "fnId" not in text  # the URL is named without its query
    assert runs == {"one": 1, "two": 0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name": "Boom", "message": "out of stock"}', "out of stock"),
        (b"{}", "answered HTTP 500"),
    ],
)
async def test_no_retry_header_on_a_500_fails_the_run_at_once(
    tmp_path: pathlib.Path, body: bytes, message: str
) -> None:
    client, fn, runs = two_steps("final", retries=3)

    async def refuse_for_good(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            return await app.forward(call)
        return Reply(500, body, {**SDK, "x-inngest-no-retry": "true"})

    async with running(tmp_path, client, [fn], refuse_for_good) as (engine, app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        reasons = failed_calls(await engine.history(run.id))
        await assert_step_one_intact(engine, run.id)
    assert run.status == "Failed"
    assert run.error is not None
    assert message in run.error["message"]
    assert len(app.calls) == 2  # one attempt, no retry
    assert len(reasons) == 1
    assert message in reasons[0]
    assert runs == {"one": 1, "two": 0}


async def test_retry_after_on_a_failed_call_is_clamped(tmp_path: pathlib.Path) -> None:
    """``Retry-After: 0`` still waits the 1 s minimum; a date past 24 h waits 24 h."""
    client, fn, runs = two_steps("later", retries=3)
    seen: list[float] = []

    async def busy(app: LoopbackApp, n: int, call: Call) -> Answer:
        seen.append(time.monotonic())
        if n == 2:
            return Reply(500, b'{"message": "busy"}', {**SDK, "retry-after": "0"})
        if n == 4:
            far = "Fri, 01 Jan 2100 00:00:00 GMT"
            return Reply(500, b'{"message": "busier"}', {**SDK, "retry-after": far})
        return await app.forward(call)

    async with running(tmp_path, client, [fn], busy, retry_backoff=0.0) as (engine, _):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)

        async def waiting_on_busier() -> bool:
            return len(failed_calls(await engine.history(run.id))) == 2

        await until(waiting_on_busier)
        [(run_at, attempt)] = peek(
            engine, "SELECT run_at, attempt FROM jobs WHERE run_id = ?", run.id
        )
        now_ms = time.time() * 1000
        assert (await engine.run(run.id)).status == "Running"
        await assert_step_one_intact(engine, run.id)
    assert 1.0 <= seen[2] - seen[1] < 3  # "0" waited the minimum second, not the 0 s backoff
    assert attempt == 1
    assert abs(run_at - (now_ms + 86_400_000)) < 5_000
    assert runs == {"one": 1, "two": 1}  # step two ran on the retried call


# -- malformed ops ---------------------------------------------------------------------------

STEP = "a" * 40


@pytest.mark.parametrize(
    ("ops", "problem", "retried"),
    [
        pytest.param(
            [{"op": "Teleport", "id": STEP}],
            "ops[0].op: unknown opcode 'Teleport'",
            True,
            id="unknown-opcode",
        ),
        pytest.param(
            [{"op": "StepRun", "data": 1}],
            "ops[0].id: StepRun needs the hashed step id",
            True,
            id="no-step-id",
        ),
        pytest.param(
            [{"op": "StepError", "id": STEP}],
            "ops[0].error: StepError needs an error",
            True,
            id="no-error",
        ),
        pytest.param(
            [{"op": "StepRun", "id": STEP, "opts": "fast"}],
            "ops[0].opts: expected dict",
            True,
            id="opts-not-an-object",
        ),
        pytest.param(
            [
                {
                    "op": "WaitForEvent",
                    "id": STEP,
                    "displayName": "w",
                    "opts": {"event": "x", "timeout": 5},
                }
            ],
            "step 'w': malformed WaitForEvent op",
            False,
            id="wait-timeout-not-a-string",
        ),
        pytest.param(
            [
                {
                    "op": "InvokeFunction",
                    "id": STEP,
                    "displayName": "i",
                    "opts": {"function_id": "mixed-healthy", "payload": {"data": "x"}},
                }
            ],
            "step 'i': malformed InvokeFunction op",
            False,
            id="invoke-data-not-an-object",
        ),
        pytest.param(
            [{"op": "Sleep", "id": STEP, "displayName": "nap", "opts": {"duration": "soon"}}],
            "step 'nap': invalid duration 'soon'",
            False,
            id="sleep-duration-invalid",
        ),
    ],
)
async def test_a_malformed_op_fails_its_run_clearly_and_others_carry_on(
    tmp_path: pathlib.Path, ops: list[dict[str, Any]], problem: str, retried: bool
) -> None:
    client = inngest.Client(app_id="mixed", is_production=False)

    @client.create_function(fn_id="broken", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def broken(ctx: inngest.Context) -> None:
        await ctx.step.run("never", lambda: None)

    @client.create_function(fn_id="healthy", trigger=inngest.TriggerEvent(event="go"))
    async def healthy(ctx: inngest.Context) -> int:
        total = 0
        for i in range(5):
            total += await ctx.step.run(f"add-{i}", int, i)
            await ctx.step.sleep(f"pause-{i}", 20)
        return total

    async def break_one_function(app: LoopbackApp, n: int, call: Call) -> Answer:
        if call.fn_id == "mixed-broken":
            return Reply(206, orjson.dumps(ops), SDK)
        return await app.forward(call)

    async with running(tmp_path, client, [broken, healthy], break_one_function) as (engine, app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        runs = {run.function_id: run.id for run in await engine.runs(event_id)}
        bad = await engine.wait(runs["mixed-broken"], timeout=5)
        good = await engine.wait(runs["mixed-healthy"], timeout=5)
        reasons = failed_calls(await engine.history(bad.id))
        # The engine still takes new work afterwards.
        [later_event] = await engine.send(inngest.Event(name="go"))
        later = [await engine.wait(r.id, timeout=5) for r in await engine.runs(later_event)]
        broken_calls = sum(1 for c in app.calls if c.fn_id == "mixed-broken")
    assert good.status == "Completed", good.error
    assert good.output == 10
    assert bad.status == "Failed"
    assert bad.error is not None
    assert problem in bad.error["message"], bad.error
    if retried:  # not a valid answer: retried like any failed call, then final
        assert len(reasons) == 2
        assert all(problem in r for r in reasons)
        assert broken_calls == 4  # two attempts for each of the two runs
    else:  # a valid answer asking for something impossible: final at once
        assert broken_calls == 2
    assert sorted(r.status for r in later) == ["Completed", "Failed"]


# -- through the server ------------------------------------------------------------------------


def registered(app_name: str, url: str) -> dict[str, Any]:
    """A register request (protocol §1.3) for one function triggered by ``<app>/go``."""
    fn_id = f"{app_name}-f"
    runtime = {"type": "http", "url": f"{url}?fnId={fn_id}&stepId=step"}
    step = {"id": "step", "name": "step", "runtime": runtime, "retries": {"attempts": 1}}
    return {
        "appName": app_name,
        "url": url,
        "sdk": "js:v3.0.0",
        "v": "0.1",
        "framework": "express",
        "functions": [
            {
                "id": fn_id,
                "name": "f",
                "triggers": [{"event": f"{app_name}/go"}],
                "steps": {"step": step},
            }
        ],
    }


async def test_the_server_reports_app_failures_on_the_run_never_a_500(
    tmp_path: pathlib.Path,
) -> None:
    """Apps synced to the server: one down, one that hangs once. The API answers 2xx and
    shows each run's reason; ``call_timeout`` applies to registered apps too."""
    server_client = inngest.Client(app_id="server", is_production=False)

    async def hang_once(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            await asyncio.sleep(30)
        return Reply(200, b'"late but fine"', SDK)

    slow = LoopbackApp(server_client, [], hang_once)
    await slow.start()
    dead = LoopbackApp(server_client, [])  # never listens
    engine = inngest.Engine(
        server_client,
        [],
        database=tmp_path / "server.db",
        durability="normal",
        retry_backoff=0.01,
        call_timeout=0.3,
    )
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://s"
    )
    try:
        async with engine, api:
            for name, app in [("slow", slow), ("dead", dead)]:
                synced = await api.post(
                    "/fn/register", content=orjson.dumps(registered(name, app.url))
                )
                assert synced.status_code == 200, synced.text
            finished: dict[str, dict[str, Any]] = {}
            for name in ("slow", "dead"):
                sent = await api.post("/e/key", content=orjson.dumps({"name": f"{name}/go"}))
                assert sent.status_code == 200, sent.text
                [event_id] = sent.json()["ids"]

                async def done(event_id: str = event_id, name: str = name) -> bool:
                    answer = await api.get(f"/v1/events/{event_id}/runs")
                    assert answer.status_code == 200, answer.text
                    runs = answer.json()["data"]
                    if runs and runs[0]["status"] in ("Completed", "Failed"):
                        shown = await api.get(f"/v1/runs/{runs[0]['run_id']}")
                        assert shown.status_code == 200, shown.text
                        finished[name] = shown.json()["data"]
                        return True
                    return False

                await until(done)
            slow_history = await engine.history(finished["slow"]["run_id"])
    finally:
        await slow.close()
        await dead.close()
    assert finished["slow"]["status"] == "Completed"
    assert finished["slow"]["output"] == "late but fine"
    [timed_out] = failed_calls(slow_history)
    assert "timed out after 0.3 s" in timed_out
    assert finished["dead"]["status"] == "Failed"
    assert "connection refused" in finished["dead"]["error"]["message"]
    assert dead.url in finished["dead"]["error"]["message"]
