"""An app built with the official ``inngest`` Python SDK (0.5.19), served by FastAPI on
uvicorn, whose functions set flow control options (concurrency, throttle, rate limit,
debounce, batching, idempotency, singleton, priority), for
``tests/e2e/test_official_flow.py``.

Run it with ``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` set to a ``mainspring dev`` server,
then ``python -m uvicorn tests.e2e.official_flow_app:app``. Every function is triggered by a
``flow/...`` event and returns what it did, with wall-clock times (``time.time()``) taken
inside its steps, so that the test can check from the runs' outputs that each control held.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="official-flow-app", is_production=False)


def _event(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


def _int(value: object) -> int:
    assert isinstance(value, int), value
    return value


def _seconds(value: object) -> float:
    assert isinstance(value, int | float), value
    return float(value)


def _seconds_of(period: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=period)


async def _add(x: int, y: int) -> int:
    return x + y


async def _times(x: int, y: int) -> int:
    return x * y


async def _bang(x: int) -> str:
    return f"{x}!"


async def _now() -> float:
    return time.time()


async def _nap(seconds: float) -> list[float]:
    """Sleep; the step's wall-clock ``[start, end]``."""
    start = time.time()
    await asyncio.sleep(seconds)
    return [start, time.time()]


# --- readiness probe (support.official_servers sends flow/steps) -----------------------------


@client.create_function(fn_id="steps", trigger=_event("flow/steps"))
async def steps(ctx: inngest.Context) -> dict[str, object]:
    n = _int(ctx.event.data["n"])
    a = await ctx.step.run("a", _add, n, 1)
    b = await ctx.step.run("b", _times, a, 2)
    c = await ctx.step.run("c", _bang, b)
    return {"a": a, "b": b, "c": c, "attempt": ctx.attempt}


# --- concurrency -----------------------------------------------------------------------------

# The settings below are repeated in tests/e2e/test_official_flow.py: keep them in step.

#: How long each step of the concurrency functions sleeps.
STEP_S = 0.4


@client.create_function(
    fn_id="concurrency",
    concurrency=[inngest.Concurrency(limit=1)],
    trigger=_event("flow/concurrency"),
)
async def concurrency(ctx: inngest.Context) -> dict[str, object]:
    """Two steps; with a limit of 1, no two of them (across runs) may overlap."""
    one = await ctx.step.run("one", _nap, STEP_S)
    two = await ctx.step.run("two", _nap, STEP_S)
    return {"n": _int(ctx.event.data["n"]), "spans": [one, two]}


@client.create_function(
    fn_id="keyed",
    concurrency=[inngest.Concurrency(limit=1, key="event.data.key")],
    trigger=_event("flow/keyed"),
)
async def keyed(ctx: inngest.Context) -> dict[str, object]:
    """Two steps; at most one step per ``event.data.key`` at a time."""
    one = await ctx.step.run("one", _nap, STEP_S)
    two = await ctx.step.run("two", _nap, STEP_S)
    return {"key": ctx.event.data["key"], "spans": [one, two]}


# --- throttle, rate limit, debounce, batching ------------------------------------------------

THROTTLE_PERIOD_S = 3
DEBOUNCE_PERIOD_S = 2
BATCH_SIZE = 3
BATCH_TIMEOUT_S = 2


@client.create_function(
    fn_id="throttle",
    throttle=inngest.Throttle(limit=1, period=_seconds_of(THROTTLE_PERIOD_S), burst=1),
    trigger=_event("flow/throttle"),
)
async def throttle(ctx: inngest.Context) -> dict[str, object]:
    started = await ctx.step.run("start", _now)
    return {"n": _int(ctx.event.data["n"]), "started": started}


@client.create_function(
    fn_id="rate-limit",
    rate_limit=inngest.RateLimit(limit=1, period=_seconds_of(60)),
    trigger=_event("flow/rate-limit"),
)
async def rate_limit(ctx: inngest.Context) -> dict[str, object]:
    return {"n": _int(ctx.event.data["n"])}


@client.create_function(
    fn_id="debounce",
    debounce=inngest.Debounce(period=_seconds_of(DEBOUNCE_PERIOD_S)),
    trigger=_event("flow/debounce"),
)
async def debounce(ctx: inngest.Context) -> dict[str, object]:
    started = await ctx.step.run("start", _now)
    return {"n": _int(ctx.event.data["n"]), "events": len(ctx.events), "started": started}


@client.create_function(
    fn_id="batch",
    batch_events=inngest.Batch(max_size=BATCH_SIZE, timeout=_seconds_of(BATCH_TIMEOUT_S)),
    trigger=_event("flow/batch"),
)
async def batch(ctx: inngest.Context) -> dict[str, object]:
    started = await ctx.step.run("start", _now)
    return {
        "event": _int(ctx.event.data["n"]),
        "events": [_int(event.data["n"]) for event in ctx.events],
        "started": started,
    }


# --- idempotency, singleton ------------------------------------------------------------------


@client.create_function(
    fn_id="idempotency",
    idempotency="event.data.order_id",
    trigger=_event("flow/idempotency"),
)
async def idempotency(ctx: inngest.Context) -> dict[str, object]:
    return {"order_id": ctx.event.data["order_id"], "n": _int(ctx.event.data["n"])}


async def _begin_then_work(ctx: inngest.Context) -> dict[str, object]:
    """A quick first step, then one that sleeps ``event.data.seconds``: once the first has
    answered, the run shows Running while the second is in flight."""
    begun = await ctx.step.run("begin", _now)
    span = await ctx.step.run("work", _nap, _seconds(ctx.event.data["seconds"]))
    return {
        "n": ctx.event.data.get("n"),
        "name": ctx.event.data.get("name"),
        "begun": begun,
        "span": span,
    }


singleton_skip = client.create_function(
    fn_id="singleton-skip",
    singleton=inngest.Singleton(key="event.data.key", mode="skip"),
    trigger=_event("flow/singleton.skip"),
)(_begin_then_work)

singleton_cancel = client.create_function(
    fn_id="singleton-cancel",
    singleton=inngest.Singleton(key="event.data.key", mode="cancel"),
    trigger=_event("flow/singleton.cancel"),
)(_begin_then_work)


# --- priority --------------------------------------------------------------------------------


priority = client.create_function(
    fn_id="priority",
    concurrency=[inngest.Concurrency(limit=1)],
    priority=inngest.Priority(run="event.data.boost"),
    trigger=_event("flow/priority"),
)(_begin_then_work)


# --- a run's status while its first call is in flight ------------------------------------


@client.create_function(
    fn_id="slow-first",
    concurrency=[inngest.Concurrency(limit=1)],
    trigger=_event("flow/slow-first"),
)
async def slow_first(ctx: inngest.Context) -> dict[str, object]:
    """Its first call runs a step that sleeps ``event.data.seconds``."""
    span = await ctx.step.run("work", _nap, _seconds(ctx.event.data["seconds"]))
    return {"span": span}


functions: list[inngest.Function[Any]] = [
    steps,
    concurrency,
    keyed,
    throttle,
    rate_limit,
    debounce,
    batch,
    idempotency,
    singleton_skip,
    singleton_cancel,
    priority,
    slow_first,
]

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)
