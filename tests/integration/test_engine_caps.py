"""Limits the engine enforces itself, whatever the SDK asked for: the steps of one run
(``Engine(step_limit=...)``) and the 366-day cap on sleeps, waits and invokes (protocol
§8.1). Our SDK refuses longer waits before they reach the engine, so the engine's own cap
is fed raw ops by an app on loopback that answers as another SDK could."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import time
from typing import Any

import orjson
import pytest

import mainspring as inngest
from mainspring.protocol.codes import ErrorCode
from tests.conftest import EngineFactory, run_to_end
from tests.integration.loopback_app import SDK, Answer, Call, LoopbackApp, Reply, running

pytestmark = pytest.mark.backends("sqlite", "postgres")

# -- the step limit --------------------------------------------------------------------------


def steps(app_id: str, n: int) -> tuple[inngest.Client, inngest.Function[int], list[int]]:
    client = inngest.Client(app_id=app_id)
    ran: list[int] = []

    def body(i: int) -> int:
        ran.append(i)
        return i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> int:
        return sum([await ctx.step.run(f"s{i}", body, i) for i in range(n)])

    return client, fn, ran


def assert_step_limit(run: inngest.Run, limit: int) -> None:
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "StepLimitError"
    assert run.error["code"] == ErrorCode.STEP_LIMIT.value
    assert f"limit of {limit} steps" in run.error["message"]


@pytest.mark.parametrize("chain_seconds", [0, 1.0], ids=["step-by-step", "chained"])
async def test_a_run_over_its_step_limit_fails_and_records_no_more(
    make_engine: EngineFactory, chain_seconds: float
) -> None:
    client, fn, _ = steps("limited", 8)
    async with make_engine(client, [fn], step_limit=5, chain_seconds=chain_seconds) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert_step_limit(run, 5)
    recorded = [h.user_id for h in history if h.op == "StepRun"]
    # One call at a time, steps are recorded up to the limit; a chain that would cross it
    # is refused whole (it answers all its steps in one unit).
    assert recorded == ([f"s{i}" for i in range(5)] if chain_seconds == 0 else [])


@pytest.mark.parametrize("chain_seconds", [0, 1.0], ids=["step-by-step", "chained"])
async def test_a_run_of_exactly_its_step_limit_completes(
    make_engine: EngineFactory, chain_seconds: float
) -> None:
    client, fn, ran = steps("at-limit", 5)
    async with make_engine(client, [fn], step_limit=5, chain_seconds=chain_seconds) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == sum(range(5))
    assert ran == list(range(5))


@pytest.mark.parametrize("plans", [False, True], ids=["call-per-step", "plan-in-one-call"])
async def test_parallel_steps_count_toward_the_limit(
    make_engine: EngineFactory, plans: bool
) -> None:
    client = inngest.Client(app_id="fan-limit")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> list[int]:
        def branch(i: int) -> Any:
            return lambda: ctx.step.run(f"p{i}", lambda: i)

        return list(await ctx.group.parallel(tuple(branch(i) for i in range(4))))

    async with make_engine(client, [fn], step_limit=3, parallel_plans=plans) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert_step_limit(run, 3)
    # A call at a time, steps are recorded up to the limit; a plan answered in one call
    # that would cross it is refused whole, as a chain is.
    assert len([h for h in history if h.op == "StepRun"]) == (0 if plans else 3)


async def test_the_default_limit_is_ten_thousand_steps(tmp_path: pathlib.Path) -> None:
    client, fn, ran = steps("default-limit", 10_001)
    # Chains of 5 ms: the chain that would cross the limit is refused whole, and one of
    # the default 20 ms reached 1,300 steps on a fast machine.
    async with inngest.Engine(
        client, [fn], database=tmp_path / "limit.db", durability="normal", chain_seconds=0.005
    ) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=120)
        history = await engine.history(run.id)
    assert_step_limit(run, 10_000)
    recorded = len([h for h in history if h.op == "StepRun"])
    assert 9_000 < recorded <= 10_000  # chains stop short of the limit, never past it
    assert len(ran) > recorded


# -- the 366-day cap, on raw ops -------------------------------------------------------------

STEP = "a" * 40
DAY_MS = 86_400_000


def iso_in(ms: int) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def answering(ops: list[dict[str, Any]]) -> tuple[inngest.Client, inngest.Function[None], Any]:
    """A function the app answers for with ``ops`` on its first call."""
    client = inngest.Client(app_id="raw", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> None:
        raise AssertionError("the app answers for this function")

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never"))
    async def child(ctx: inngest.Context) -> None:
        await ctx.step.wait_for_event("hold", event="never", timeout=3_600_000)  # stays open

    async def raw(app: LoopbackApp, n: int, call: Call) -> Answer:
        if call.fn_id == fn.id and n == 1:
            return Reply(206, orjson.dumps(ops), SDK)
        return await app.forward(call)

    return client, fn, (raw, [fn, child])


def sleep_op(**fields: Any) -> dict[str, Any]:
    return {"op": "Sleep", "id": STEP, "displayName": "nap", **fields}


def wait_op(timeout: str) -> dict[str, Any]:
    opts = {"event": "approved", "timeout": timeout}
    return {"op": "WaitForEvent", "id": STEP, "displayName": "reply", "opts": opts}


def invoke_op(timeout: str) -> dict[str, Any]:
    opts = {"function_id": "raw-child", "payload": {"data": {}}, "timeout": timeout}
    return {"op": "InvokeFunction", "id": STEP, "displayName": "call", "opts": opts}


TOO_LONG = [
    pytest.param(sleep_op(name=iso_in(400 * DAY_MS)), "sleeps", id="sleep-until-a-date"),
    pytest.param(sleep_op(opts={"duration": "367d"}), "sleeps", id="sleep-duration"),
    pytest.param(wait_op("367d"), "waits", id="wait-timeout"),
    pytest.param(invoke_op("367d"), "invokes", id="invoke-timeout"),
]


@pytest.mark.parametrize(("op", "what"), TOO_LONG)
async def test_the_engine_refuses_waits_over_366_days(
    tmp_path: pathlib.Path, op: dict[str, Any], what: str
) -> None:
    client, _, (raw, functions) = answering([op])
    async with running(tmp_path, client, functions, raw) as (engine, _app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
        jobs = await engine._store.jobs_for_run(run.id)
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "TimeoutTooLongError"
    assert run.error["code"] == ErrorCode.TIMEOUT_TOO_LONG.value
    assert f"{what} are limited to 366 days" in run.error["message"]
    assert jobs == []


ALLOWED = [
    pytest.param(sleep_op(opts={"duration": "366d"}), "sleep", id="sleep-duration"),
    pytest.param(wait_op("366d"), "pause-timeout", id="wait-timeout"),
    pytest.param(invoke_op("366d"), "pause-timeout", id="invoke-timeout"),
    pytest.param(
        {
            **invoke_op("366d"),
            "opts": {"function_id": "raw-child", "payload": "x", "timeout": "366d"},
        },
        "pause-timeout",
        id="invoke-payload-not-an-object",  # taken as no data
    ),
]


@pytest.mark.parametrize(("op", "kind"), ALLOWED)
async def test_366_days_exactly_is_allowed(
    tmp_path: pathlib.Path, op: dict[str, Any], kind: str
) -> None:
    client, _, (raw, functions) = answering([op])
    async with running(tmp_path, client, functions, raw) as (engine, _app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        started = time.time() * 1000
        for _ in range(300):
            jobs = [j for j in await engine._store.jobs_for_run(run.id) if j.kind.value == kind]
            if jobs:
                break
            await asyncio.sleep(0.01)
        state = await engine.run(run.id)
    assert state.status == "Running", state.error
    [job] = jobs
    assert abs(job.run_at - (started + 366 * DAY_MS)) < 5_000
    assert job.data is not None
    # Filed under the op's display name (it has no userland id), outside any group.
    assert (job.data["user_id"], job.data["mode"]) == (op["displayName"], None)


# -- waits the engine cannot take: each fails its run, naming the step and the problem --------


MALFORMED = [
    pytest.param(sleep_op(opts={"duration": "soon"}), "SleepError", "invalid duration 'soon'"),
    pytest.param(wait_op("soon"), "WaitError", "invalid duration 'soon'"),
    pytest.param(
        {"op": "WaitForEvent", "id": STEP, "displayName": "reply", "opts": {"timeout": "1h"}},
        "WaitError",
        "no event name",
    ),
    pytest.param(
        {**wait_op("1h"), "opts": {"event": "approved", "timeout": "1h", "if": "async.data =="}},
        "ExpressionError",
        "invalid wait condition",
    ),
    pytest.param(
        {"op": "InvokeFunction", "id": STEP, "displayName": "call", "opts": {"timeout": "1h"}},
        "InvokeError",
        "no function_id",
    ),
    pytest.param(invoke_op("soon"), "InvokeError", "invalid duration 'soon'"),
    pytest.param(
        {**invoke_op("1h"), "opts": {"function_id": "", "timeout": "1h"}},
        "InvokeError",
        "no function_id",
    ),
    # Not a time string: the op's name is read instead (an ISO date from other SDKs).
    pytest.param(sleep_op(opts={"duration": 5}), "SleepError", "invalid duration ''"),
]


@pytest.mark.parametrize(("op", "name", "problem"), MALFORMED)
async def test_a_wait_the_engine_cannot_take_fails_the_run(
    tmp_path: pathlib.Path, op: dict[str, Any], name: str, problem: str
) -> None:
    client, _, (raw, functions) = answering([op])
    async with running(tmp_path, client, functions, raw) as (engine, _app):
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == name
    assert run.error["message"].startswith(f"step {op['displayName']!r}: ")
    assert problem in run.error["message"]


async def test_an_invoke_of_an_unknown_function_is_a_step_error(tmp_path: pathlib.Path) -> None:
    """The reference finishes such an invoke at once with an error (§8.5): the step fails,
    and the function is called again with that result."""
    op = {**invoke_op("1h"), "opts": {"function_id": "raw-missing", "timeout": "1h"}}
    client, _, (raw, functions) = answering([op])
    async with running(tmp_path, client, functions, raw) as (engine, app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        for _ in range(300):
            history = await engine.history(run.id)
            if history:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        calls = [orjson.loads(c.body) for c in app.calls]
    step = history[0]  # (then the app fails the function: it answers only the first call)
    assert (step.step_id, step.user_id, step.op) == (STEP, "call", "InvokeFunction")
    assert step.error is not None
    assert step.error["message"] == "could not find function with ID: raw-missing"
    # Called again with the failed step's result in its memos.
    assert len(calls) >= 2
    assert calls[1]["steps"][STEP] == {"error": step.error}


async def test_a_wait_without_a_timeout_expires_at_once(tmp_path: pathlib.Path) -> None:
    op = {"op": "WaitForEvent", "id": STEP, "displayName": "reply", "opts": {"event": "approved"}}
    client, _, (raw, functions) = answering([op])
    async with running(tmp_path, client, functions, raw) as (engine, _app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        for _ in range(300):
            history = await engine.history(run.id)
            if history:
                break
            await asyncio.sleep(0.01)
    step = history[0]  # (then the app fails the function: it answers only the first call)
    assert (step.user_id, step.op, step.output) == ("reply", "WaitForEvent", None)
