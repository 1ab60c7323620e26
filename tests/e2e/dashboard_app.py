"""An app served over HTTP by uvicorn, for the dashboard's browser tests: a parallel
function whose two branches overlap in time, a failing one, a sleeping one, a batch of
events, and one of more steps than the run page lists at once.

Run it with ``MAINSPRING_DEV=1`` and ``MAINSPRING_API_BASE_URL`` set to the server, then
``python -m uvicorn tests.e2e.dashboard_app:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import mainspring as inngest
from mainspring.sdk.serve.asgi import serve

client = inngest.Client(app_id="dash-app")


async def _slow(label: str) -> str:
    await asyncio.sleep(0.6)
    return f"{label} done"


@client.create_function(fn_id="fan-out", trigger=inngest.TriggerEvent(event="dash/fan-out"))
async def fan_out(ctx: inngest.Context) -> list[str]:
    pair = await ctx.group.parallel(
        (
            lambda: ctx.step.run("left-branch", _slow, "left"),
            lambda: ctx.step.run("right-branch", _slow, "right"),
        )
    )
    return list(pair)


def _explode() -> str:
    raise ValueError("the flux capacitor is out of plutonium")


@client.create_function(fn_id="failing", trigger=inngest.TriggerEvent(event="dash/fail"), retries=0)
async def failing(ctx: inngest.Context) -> str:
    return await ctx.step.run("explode", _explode)


@client.create_function(fn_id="sleepy", trigger=inngest.TriggerEvent(event="dash/sleep"))
async def sleepy(ctx: inngest.Context) -> str:
    await ctx.step.run("before-nap", lambda: "yawn")
    await ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return "rested"


@client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="dash/hello"))
async def hello(ctx: inngest.Context) -> str:
    return await ctx.step.run("greet", lambda: f"hello {ctx.event.data.get('who', 'you')}")


@client.create_function(
    fn_id="batched",
    trigger=inngest.TriggerEvent(event="dash/batch"),
    batch_events=inngest.Batch(max_size=4, timeout="60s"),
)
async def batched(ctx: inngest.Context) -> list[object]:
    return [event.data.get("n") for event in ctx.events]


#: Steps of the "many-steps" function: more than the run page lists at once.
MANY_STEPS = 120


def _count(n: int) -> dict[str, int]:
    return {"n": n, "square": n * n}


def _refuse() -> None:
    raise inngest.NonRetriableError("step 4 refuses, and the function goes on")


@client.create_function(fn_id="many-steps", trigger=inngest.TriggerEvent(event="dash/many"))
async def many_steps(ctx: inngest.Context) -> int:
    """A failed step early on (caught), then many more: it is outside the latest window."""
    with contextlib.suppress(inngest.StepError):
        await ctx.step.run("refuse", _refuse)
    total = 0
    for i in range(MANY_STEPS):
        total += (await ctx.step.run(f"count-{i}", _count, i))["n"]
    return total


app = serve(client, [fan_out, failing, sleepy, hello, batched, many_steps])
