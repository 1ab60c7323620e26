"""An app built with the official ``inngest`` Python SDK (0.5.19), served by Flask on
werkzeug's threaded WSGI server, for the compatibility e2e test
(``tests/e2e/test_official_sdk_flask.py``).

Every function (and the ``on_failure`` handler) is synchronous, so ``inngest.flask.serve``
installs its sync route, which runs them with ``CommHandler.post_sync``. Run it with
``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` set to a ``mainspring dev`` server, then
``python -m flask --app tests.e2e.official_flask_app run --with-threads``. Every function is
triggered by a ``flask/...`` event and returns something the test can check exactly.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import flask
import inngest
import inngest.flask

# werkzeug logs one line per request at INFO; keep only its warnings and errors.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

client = inngest.Inngest(app_id="official-flask-app", is_production=False)


def _event(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


def _int(value: object) -> int:
    assert isinstance(value, int), value
    return value


def _same(value: str) -> str:
    return value


def _slow(value: str, seconds: float) -> str:
    time.sleep(seconds)
    return value


def _now() -> float:
    return time.time()


# --- step.run sequence -----------------------------------------------------------------------


@client.create_function(fn_id="steps", trigger=_event("flask/steps"))
def steps(ctx: inngest.ContextSync) -> dict[str, object]:
    n = _int(ctx.event.data["n"])
    a = ctx.step.run("a", lambda: n + 1)
    b = ctx.step.run("b", lambda: a * 2)
    c = ctx.step.run("c", lambda: f"{b}!")
    return {"a": a, "b": b, "c": c, "attempt": ctx.attempt}


# --- parallel groups -------------------------------------------------------------------------


@client.create_function(fn_id="parallel-wait", trigger=_event("flask/parallel.wait"))
def parallel_wait(ctx: inngest.ContextSync) -> dict[str, object]:
    first = ctx.step.run("first", _same, "first")
    group = ctx.group.parallel(
        (
            lambda: ctx.step.run("p1", _same, "p1"),
            lambda: ctx.step.run("p2", _slow, "p2", 0.3),
            lambda: ctx.step.run("p3", _same, "p3"),
        )
    )
    last = ctx.step.run("last", _same, f"after {len(group)}")
    return {"first": first, "group": list(group), "last": last}


@client.create_function(fn_id="parallel-race", trigger=_event("flask/parallel.race"))
def parallel_race(ctx: inngest.ContextSync) -> dict[str, object]:
    """In race mode the server calls back after each branch; py still resolves all of them."""
    group = ctx.group.parallel(
        (
            lambda: ctx.step.run("fast", _same, "fast"),
            lambda: ctx.step.run("slow", _slow, "slow", 0.5),
        ),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    last = ctx.step.run("last", _same, "last")
    return {"group": list(group), "last": last}


@client.create_function(fn_id="parallel-race-sleep", trigger=_event("flask/parallel.race.sleep"))
def parallel_race_sleep(ctx: inngest.ContextSync) -> dict[str, object]:
    """Race a step.run against a sleep: the sleep is re-reported by each discovery call."""

    def nap() -> str | None:
        ctx.step.sleep("nap", datetime.timedelta(seconds=1))
        return None

    group = ctx.group.parallel(
        (lambda: ctx.step.run("fast", _same, "fast"), nap),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    return {"group": list(group)}


# --- sleep -----------------------------------------------------------------------------------


@client.create_function(fn_id="sleep", trigger=_event("flask/sleep"))
def sleep(ctx: inngest.ContextSync) -> dict[str, object]:
    before = ctx.step.run("before", _now)
    ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    after = ctx.step.run("after", _now)
    return {"slept": after - before}


# --- wait_for_event --------------------------------------------------------------------------


@client.create_function(fn_id="wait", trigger=_event("flask/wait"))
def wait(ctx: inngest.ContextSync) -> dict[str, object]:
    got = ctx.step.wait_for_event(
        "reply",
        event="flask/wait.reply",
        if_exp="async.data.token == event.data.token",
        timeout=datetime.timedelta(seconds=_int(ctx.event.data["timeout_s"])),
    )
    if got is None:
        return {"got": None}
    return {"got": {"name": got.name, "data": dict(got.data)}}


# --- invoke ----------------------------------------------------------------------------------


@client.create_function(fn_id="child", trigger=_event("flask/child"))
def child(ctx: inngest.ContextSync) -> dict[str, object]:
    x = _int(ctx.event.data["x"])
    if x < 0:
        raise inngest.NonRetriableError(f"negative x: {x}")
    doubled = ctx.step.run("double", lambda: x * 2)
    return {"doubled": doubled}


@client.create_function(fn_id="invoker", trigger=_event("flask/invoke"))
def invoker(ctx: inngest.ContextSync) -> dict[str, object]:
    try:
        result = ctx.step.invoke(
            "call-child",
            function=child,
            data={"x": _int(ctx.event.data["x"])},
            timeout=datetime.timedelta(seconds=20),
        )
    except inngest.StepError as err:
        return {"caught": err.name, "message": err.message}
    return {"result": result}


# --- errors ----------------------------------------------------------------------------------


def _boom(attempt: int) -> None:
    raise ValueError(f"boom at attempt {attempt}")


@client.create_function(fn_id="step-error", retries=1, trigger=_event("flask/step-error"))
def step_error(ctx: inngest.ContextSync) -> dict[str, object]:
    """Attempt 0 reports StepError (retried after the server's backoff), attempt 1 StepFailed."""
    try:
        ctx.step.run("flaky", _boom, ctx.attempt)
    except inngest.StepError as err:
        return {"caught": err.name, "message": err.message, "attempt": ctx.attempt}
    return {"caught": None}


@client.create_function(fn_id="non-retriable", retries=3, trigger=_event("flask/non-retriable"))
def non_retriable(ctx: inngest.ContextSync) -> None:
    raise inngest.NonRetriableError(f"give up at attempt {ctx.attempt}")


def _on_failure(ctx: inngest.ContextSync) -> dict[str, object]:
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
    fn_id="failing", retries=0, on_failure=_on_failure, trigger=_event("flask/failing")
)
def failing(ctx: inngest.ContextSync) -> None:
    raise ValueError(f"failed for {ctx.event.data['who']}")


def _on_failure_error(ctx: inngest.ContextSync) -> dict[str, object]:
    """The failure event's error as the handler reads it."""
    data = ctx.event.data
    error = data["error"]
    assert isinstance(error, Mapping), data
    return {"function_id": data["function_id"], "run_id": data["run_id"], "error": dict(error)}


@client.create_function(
    fn_id="fail-last",
    retries=1,
    on_failure=_on_failure_error,
    trigger=_event("flask/fail-last"),
)
def fail_last(ctx: inngest.ContextSync) -> None:
    """Raises outside any step on every attempt: the last one's error fails the run."""
    raise ValueError(f"broke at attempt {ctx.attempt}")


def _step_broke() -> None:
    raise ValueError("step broke")


@client.create_function(
    fn_id="step-fail-last",
    retries=0,
    on_failure=_on_failure_error,
    trigger=_event("flask/step-fail-last"),
)
def step_fail_last(ctx: inngest.ContextSync) -> None:
    """The step fails on its last attempt (StepFailed); the StepError the SDK raises from
    its memo is left uncaught, so the run fails with the step's error."""
    ctx.step.run("broken", _step_broke)


# --- send_event ------------------------------------------------------------------------------


@client.create_function(fn_id="sender", trigger=_event("flask/send"))
def sender(ctx: inngest.ContextSync) -> list[str]:
    return ctx.step.send_event(
        "emit",
        inngest.Event(name="flask/sent", data={"from": ctx.run_id, "v": ctx.event.data["v"]}),
    )


@client.create_function(fn_id="receiver", trigger=_event("flask/sent"))
def receiver(ctx: inngest.ContextSync) -> dict[str, object]:
    return {"received": dict(ctx.event.data)}


functions: list[inngest.Function[Any]] = [
    steps,
    parallel_wait,
    parallel_race,
    parallel_race_sleep,
    sleep,
    wait,
    child,
    invoker,
    step_error,
    non_retriable,
    failing,
    fail_last,
    step_fail_last,
    sender,
    receiver,
]

# One async handler would switch inngest.flask.serve to its async route: keep them all sync.
assert not any(f.is_handler_async or f.is_on_failure_handler_async for f in functions)

app = flask.Flask(__name__)
inngest.flask.serve(app, client, functions)
