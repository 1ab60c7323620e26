"""An app built with the official ``inngest`` Python SDK (0.5.19), served by FastAPI on
uvicorn, for the compatibility e2e test (``tests/e2e/test_official_sdk.py``).

Run it with ``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` set to a ``mainspring dev`` server,
then ``python -m uvicorn tests.e2e.official_app:app``. Every function is triggered by an
``official/...`` event and returns something the test can check exactly.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Mapping
from typing import Any

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="official-app", is_production=False)


def _event(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


def _int(value: object) -> int:
    assert isinstance(value, int), value
    return value


async def _add(x: int, y: int) -> int:
    return x + y


async def _times(x: int, y: int) -> int:
    return x * y


async def _bang(x: int) -> str:
    return f"{x}!"


async def _now() -> float:
    return time.time()


async def _slow(value: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return value


async def _same(value: str) -> str:
    return value


# --- step.run sequences (async and sync handlers) -------------------------------------------


@client.create_function(fn_id="steps", trigger=_event("official/steps"))
async def steps(ctx: inngest.Context) -> dict[str, object]:
    n = _int(ctx.event.data["n"])
    a = await ctx.step.run("a", _add, n, 1)
    b = await ctx.step.run("b", _times, a, 2)
    c = await ctx.step.run("c", _bang, b)
    return {"a": a, "b": b, "c": c, "attempt": ctx.attempt}


@client.create_function(fn_id="steps-sync", trigger=_event("official/steps.sync"))
def steps_sync(ctx: inngest.ContextSync) -> dict[str, object]:
    n = _int(ctx.event.data["n"])
    a = ctx.step.run("a", lambda: n + 1)
    b = ctx.step.run("b", lambda: a * 2)
    c = ctx.step.run("c", lambda: f"{b}!")
    return {"a": a, "b": b, "c": c, "attempt": ctx.attempt}


@client.create_function(fn_id="ids", trigger=_event("official/ids"))
async def ids(ctx: inngest.Context) -> dict[str, object]:
    """The SDK fills these from the call request's x-request-id and x-inngest-job-id headers."""
    return {"request_id": ctx.request_id, "job_id": ctx.job_id, "run_id": ctx.run_id}


# --- parallel groups -------------------------------------------------------------------------


@client.create_function(fn_id="parallel-wait", trigger=_event("official/parallel.wait"))
async def parallel_wait(ctx: inngest.Context) -> dict[str, object]:
    first = await ctx.step.run("first", _same, "first")
    group = await ctx.group.parallel(
        (
            lambda: ctx.step.run("p1", _same, "p1"),
            lambda: ctx.step.run("p2", _slow, "p2", 0.3),
            lambda: ctx.step.run("p3", _same, "p3"),
        )
    )
    last = await ctx.step.run("last", _same, f"after {len(group)}")
    return {"first": first, "group": list(group), "last": last}


@client.create_function(fn_id="parallel-race", trigger=_event("official/parallel.race"))
async def parallel_race(ctx: inngest.Context) -> dict[str, object]:
    """In race mode the server calls back after each branch; py still resolves all of them."""
    group = await ctx.group.parallel(
        (
            lambda: ctx.step.run("fast", _same, "fast"),
            lambda: ctx.step.run("slow", _slow, "slow", 0.5),
        ),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    last = await ctx.step.run("last", _same, "last")
    return {"group": list(group), "last": last}


@client.create_function(fn_id="parallel-race-sleep", trigger=_event("official/parallel.race.sleep"))
async def parallel_race_sleep(ctx: inngest.Context) -> dict[str, object]:
    """Race a step.run against a sleep: the sleep is re-reported by each discovery call."""

    async def nap() -> str | None:
        await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
        return None

    group = await ctx.group.parallel(
        (lambda: ctx.step.run("fast", _same, "fast"), nap),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    return {"group": list(group)}


# --- sleep -----------------------------------------------------------------------------------


@client.create_function(fn_id="sleep", trigger=_event("official/sleep"))
async def sleep(ctx: inngest.Context) -> dict[str, object]:
    before = await ctx.step.run("before", _now)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    after = await ctx.step.run("after", _now)
    return {"slept": after - before}


# --- wait_for_event --------------------------------------------------------------------------


@client.create_function(fn_id="wait", trigger=_event("official/wait"))
async def wait(ctx: inngest.Context) -> dict[str, object]:
    got = await ctx.step.wait_for_event(
        "reply",
        event="official/wait.reply",
        if_exp="async.data.token == event.data.token",
        timeout=datetime.timedelta(seconds=_int(ctx.event.data["timeout_s"])),
    )
    if got is None:
        return {"got": None}
    return {"got": {"name": got.name, "data": dict(got.data)}}


# --- invoke ----------------------------------------------------------------------------------


@client.create_function(fn_id="child", trigger=_event("official/child"))
async def child(ctx: inngest.Context) -> dict[str, object]:
    x = _int(ctx.event.data["x"])
    if x < 0:
        raise inngest.NonRetriableError(f"negative x: {x}")
    doubled = await ctx.step.run("double", _times, x, 2)
    return {"doubled": doubled}


@client.create_function(fn_id="invoker", trigger=_event("official/invoke"))
async def invoker(ctx: inngest.Context) -> dict[str, object]:
    try:
        result = await ctx.step.invoke(
            "call-child",
            function=child,
            data={"x": _int(ctx.event.data["x"])},
            timeout=datetime.timedelta(seconds=20),
        )
    except inngest.StepError as err:
        return {"caught": err.name, "message": err.message}
    return {"result": result}


# --- errors ----------------------------------------------------------------------------------


@client.create_function(fn_id="non-retriable", retries=3, trigger=_event("official/non-retriable"))
async def non_retriable(ctx: inngest.Context) -> None:
    raise inngest.NonRetriableError(f"give up at attempt {ctx.attempt}")


@client.create_function(fn_id="retry-after", retries=2, trigger=_event("official/retry-after"))
async def retry_after(ctx: inngest.Context) -> dict[str, object]:
    started = await ctx.step.run("started", _now)
    if ctx.attempt == 0:
        raise inngest.RetryAfterError("not yet", retry_after=datetime.timedelta(seconds=1))
    return {"attempt": ctx.attempt, "waited": time.time() - started}


async def _boom(attempt: int) -> None:
    raise ValueError(f"boom at attempt {attempt}")


@client.create_function(fn_id="step-error", retries=1, trigger=_event("official/step-error"))
async def step_error(ctx: inngest.Context) -> dict[str, object]:
    """Attempt 0 reports StepError (retried after the server's backoff), attempt 1 StepFailed."""
    try:
        await ctx.step.run("flaky", _boom, ctx.attempt)
    except inngest.StepError as err:
        return {"caught": err.name, "message": err.message, "attempt": ctx.attempt}
    return {"caught": None}


async def _on_failure(ctx: inngest.Context) -> dict[str, object]:
    data = ctx.event.data
    error = data["error"]
    original = data["event"]
    assert isinstance(error, Mapping), data
    assert isinstance(original, Mapping), data
    return {
        "event": ctx.event.name,
        "function_id": data["function_id"],
        "run_id": data["run_id"],
        "error": error["message"],
        "original": original["data"],
    }


@client.create_function(
    fn_id="failing", retries=0, on_failure=_on_failure, trigger=_event("official/failing")
)
async def failing(ctx: inngest.Context) -> None:
    raise ValueError(f"failed for {ctx.event.data['who']}")


async def _on_failure_error(ctx: inngest.Context) -> dict[str, object]:
    """The failure event's error as the handler reads it."""
    data = ctx.event.data
    error = data["error"]
    assert isinstance(error, Mapping), data
    return {"function_id": data["function_id"], "run_id": data["run_id"], "error": dict(error)}


@client.create_function(
    fn_id="fail-last",
    retries=1,
    on_failure=_on_failure_error,
    trigger=_event("official/fail-last"),
)
async def fail_last(ctx: inngest.Context) -> None:
    """Raises outside any step on every attempt: the last one's error fails the run."""
    raise ValueError(f"broke at attempt {ctx.attempt}")


async def _step_broke() -> None:
    raise ValueError("step broke")


@client.create_function(
    fn_id="step-fail-last",
    retries=0,
    on_failure=_on_failure_error,
    trigger=_event("official/step-fail-last"),
)
async def step_fail_last(ctx: inngest.Context) -> None:
    """The step fails on its last attempt (StepFailed); the StepError the SDK raises from
    its memo is left uncaught, so the run fails with the step's error."""
    await ctx.step.run("broken", _step_broke)


# --- send_event ------------------------------------------------------------------------------


@client.create_function(fn_id="sender", trigger=_event("official/send"))
async def sender(ctx: inngest.Context) -> list[str]:
    return await ctx.step.send_event(
        "emit",
        inngest.Event(name="official/sent", data={"from": ctx.run_id, "v": ctx.event.data["v"]}),
    )


@client.create_function(fn_id="receiver", trigger=_event("official/sent"))
async def receiver(ctx: inngest.Context) -> dict[str, object]:
    return {"received": dict(ctx.event.data)}


# --- large state: 10 steps of 1 MB each (over 4 MB, the executor switches to use_api) ----------


def _megabyte(index: int) -> str:
    """1 MB (1,048,576 characters) of text that differs by step."""
    return (f"{index:x}" * 1_048_576)[:1_048_576]


@client.create_function(fn_id="big-steps", trigger=_event("official/big"))
async def big_steps(ctx: inngest.Context) -> dict[str, object]:
    outputs = [await ctx.step.run(f"mb-{i}", _same, _megabyte(i)) for i in range(10)]
    # Every output must be the one its step returned, after each replay with fetched state.
    intact = all(out == _megabyte(i) for i, out in enumerate(outputs))
    return {"steps": len(outputs), "bytes": sum(len(o) for o in outputs), "intact": intact}


functions: list[inngest.Function[Any]] = [
    steps,
    steps_sync,
    ids,
    parallel_wait,
    parallel_race,
    parallel_race_sleep,
    sleep,
    wait,
    child,
    invoker,
    non_retriable,
    retry_after,
    step_error,
    failing,
    fail_last,
    step_fail_last,
    sender,
    receiver,
    big_steps,
]

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)

#: Call requests the app answered, by run id: (discovery calls, calls targeted at a step).
calls: dict[str, list[int]] = {}


@app.middleware("http")
async def count_calls(request: fastapi.Request, call_next: Any) -> Any:
    run_id = request.headers.get("x-run-id")
    if request.method == "POST" and run_id:
        counts = calls.setdefault(run_id, [0, 0])
        counts[request.query_params.get("stepId", "step") != "step"] += 1
    return await call_next(request)


@app.get("/calls/{run_id}")
async def calls_of(run_id: str) -> dict[str, int]:
    """How many calls one run took: the request shape a test can check (protocol §7)."""
    discovery, targeted = calls.get(run_id, [0, 0])
    return {"discovery": discovery, "targeted": targeted}
