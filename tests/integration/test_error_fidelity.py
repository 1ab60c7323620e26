"""Errors keep what the app said (protocol §3.4, §8.4, §8.7).

A function-level failure is an HTTP 4xx/5xx whose body is the error. Its name, message and
stack must become the run's error (``GET /v1/runs/{id}``) and the ``data.error`` of the
``inngest/function.failed`` event that on-failure handlers read, whatever form the answer
takes: plain JSON, streamed (201), without a stack or a name, or not JSON at all. Every
error the engine stores or emits has a ``stack`` key, ``null`` when there is none.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.server.app import create_app
from tests.conftest import EngineFactory, run_to_end, until_idle
from tests.integration.loopback_app import SDK, Answer, Call, LoopbackApp, Reply, running

pytestmark = pytest.mark.backends("sqlite", "postgres")

TRACEBACK = 'Traceback (most recent call last):\n  File "app.py", line 3\nValueError: boom\n'
BOOM = {"name": "ValueError", "message": "boom", "stack": TRACEBACK}
NO_RETRY = {**SDK, "x-inngest-no-retry": "true"}


def _streamed(status: int, headers: dict[str, str], body: bytes) -> Reply:
    """A 201 keep-alive answer wrapping the real one, as the Python SDK streams it (§3.5)."""
    final = {"status": status, "headers": headers, "body": body.decode()}
    return Reply(201, b"  " + orjson.dumps(final), SDK)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(Reply(500, orjson.dumps(BOOM), SDK), BOOM, id="500-retried"),
        pytest.param(
            Reply(500, orjson.dumps({"code": "unknown", **BOOM}), SDK),
            {**BOOM, "code": "unknown"},
            id="500-with-code",
        ),
        pytest.param(Reply(400, orjson.dumps(BOOM), NO_RETRY), BOOM, id="400-no-retry"),
        pytest.param(_streamed(500, SDK, orjson.dumps(BOOM)), BOOM, id="streamed"),
        pytest.param(
            # What the official SDK answers for errors it builds itself: no stack.
            Reply(
                500,
                orjson.dumps(
                    {
                        "code": "step_unexpected",
                        "message": 'found step "b" when targeting a different step',
                        "name": "StepUnexpectedError",
                    }
                ),
                NO_RETRY,
            ),
            {
                "name": "StepUnexpectedError",
                "message": 'found step "b" when targeting a different step',
                "stack": None,
                "code": "step_unexpected",
            },
            id="no-stack",
        ),
        pytest.param(
            Reply(500, b'{"message": "out of stock"}', SDK),
            {"name": "Error", "message": "out of stock", "stack": None},
            id="no-name",
        ),
        pytest.param(
            Reply(500, b"ValueError: boom", {**SDK, "content-type": "text/plain"}),
            {"name": "Error", "message": "ValueError: boom", "stack": None},
            id="not-json",
        ),
    ],
)
async def test_a_function_level_failure_is_the_run_error_and_the_failure_events_error(
    tmp_path: pathlib.Path, answer: Reply, error: dict[str, Any]
) -> None:
    client = inngest.Client(app_id="errs", is_production=False)
    seen: list[dict[str, Any]] = []

    async def on_failure(ctx: inngest.Context) -> None:
        seen.append(dict(ctx.event.data))

    @client.create_function(
        fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1, on_failure=on_failure
    )
    async def fn(ctx: inngest.Context) -> None:
        raise AssertionError("the app answers for this function")

    async def fail_the_function(app: LoopbackApp, n: int, call: Call) -> Answer:
        # The on-failure handler is a function of its own: the real SDK answers for it.
        return answer if call.fn_id == fn.id else await app.forward(call)

    async with running(tmp_path, client, [fn], fail_the_function) as (engine, _app):
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://s"
        )
        async with api:
            run = await run_to_end(engine, inngest.Event(name="go", data={"order": 7}), timeout=5)
            shown = (await api.get(f"/v1/runs/{run.id}")).json()["data"]
            history = await engine.history(run.id)
            await until_idle(engine)  # the handler ran, and nothing runs it again
            [failed] = await engine.events(name="inngest/function.failed")
    assert run.status == "Failed"
    assert run.error == error
    assert shown["error"] == error
    # Each failed call keeps the app's error too (one call when the answer says no retry).
    attempts = [h.error for h in history if h.op == FUNCTION_ERROR_OP]
    final_at_once = answer.headers.get("x-inngest-no-retry") == "true"
    assert attempts == [error] * (1 if final_at_once else 2)
    assert failed.data["run_id"] == run.id
    assert failed.data["error"] == {"error": error["message"], **error}
    assert len(seen) == 1, seen
    assert seen[0]["error"] == failed.data["error"]
    assert seen[0]["event"]["data"] == {"order": 7}


async def test_an_official_sdk_step_failure_re_raised_keeps_the_users_error(
    tmp_path: pathlib.Path,
) -> None:
    """The official SDK reports a step's last failure as ``StepFailed``; the function then
    re-raises it (a ``StepError``, code ``step_errored``): the run's error is the step's."""
    client = inngest.Client(app_id="errs", is_production=False)
    step_error = {**BOOM, "code": "step_errored"}
    step_id = "0" * 40

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> None:
        raise AssertionError("the app answers for this function")

    async def official(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            op = {"op": "StepFailed", "id": step_id, "displayName": "flaky", "error": step_error}
            return Reply(206, orjson.dumps([op]), NO_RETRY)
        memo = orjson.loads(call.body)["steps"][step_id]
        assert memo == {"error": step_error}  # what the SDK will raise from
        return Reply(500, orjson.dumps(memo["error"]), NO_RETRY)

    async with running(tmp_path, client, [fn], official) as (engine, _app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
    assert run.status == "Failed"
    assert run.error == step_error


async def test_errors_the_engine_writes_have_a_null_stack(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="errs")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        return await ctx.step.invoke_by_id("call", function_id="nope")

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        [step] = [h for h in await engine.history(run.id) if h.op == "InvokeFunction"]
    missing = {"name": "Error", "message": "could not find function with ID: errs-nope"}
    assert step.error == {**missing, "stack": None}
    # The SDK raised the step's error and left it uncaught.
    assert run.error == {**missing, "stack": None, "code": "step_errored"}


async def test_a_failing_failure_listener_does_not_start_itself_again(
    make_engine: EngineFactory,
) -> None:
    """A run started by ``inngest/function.failed`` emits no finish events of its own, as
    in the reference: a listener that fails would otherwise trigger itself forever."""
    client = inngest.Client(app_id="errs")
    calls: list[str] = []

    async def broken_handler(ctx: inngest.Context) -> None:
        calls.append("handler")
        raise RuntimeError("the handler broke too")

    @client.create_function(
        fn_id="watch", trigger=inngest.TriggerEvent(event="inngest/function.failed"), retries=0
    )
    async def watch(ctx: inngest.Context) -> None:
        calls.append(f"watch {ctx.event.data['function_id']}")
        raise RuntimeError("the watcher broke")

    @client.create_function(
        fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0, on_failure=broken_handler
    )
    async def fn(ctx: inngest.Context) -> None:
        raise ValueError("first")

    async with make_engine(client, [watch, fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        for _ in range(300):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time enough for a loop to show
        failed = await engine.events(name="inngest/function.failed")
    assert run.status == "Failed"
    assert sorted(calls) == ["handler", "watch errs-f"]
    assert [e.data["run_id"] for e in failed] == [run.id]
