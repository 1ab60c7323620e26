"""An app served over HTTP by uvicorn, for the dashboard's browser tests: a parallel
function whose two branches overlap in time, a failing one, and a sleeping one.

Run it with ``MAINSPRING_DEV=1`` and ``MAINSPRING_API_BASE_URL`` set to the server, then
``python -m uvicorn tests.e2e.dashboard_app:app``.
"""

from __future__ import annotations

import asyncio
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


app = serve(client, [fan_out, failing, sleepy, hello])
