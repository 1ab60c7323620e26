"""Functions for the CLI's bulk tests (``test_cli_bulk.py``): runs that sleep for an hour,
runs a throttle keeps queued for an hour, a bystander on the same event, and a quick one
to rerun."""

from __future__ import annotations

import datetime

import mainspring as inngest

client = inngest.Client(app_id="cli-bulk", is_production=False)
HOUR = datetime.timedelta(hours=1)


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="bulk/nap"))
async def nap(ctx: inngest.Context) -> str:
    await ctx.step.sleep("nap", HOUR)
    return "woke"


@client.create_function(fn_id="bystander", trigger=inngest.TriggerEvent(event="bulk/nap"))
async def bystander(ctx: inngest.Context) -> str:
    await ctx.step.sleep("nap", HOUR)
    return "woke"


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="bulk/throttled"),
    throttle=inngest.Throttle(limit=1, period=HOUR),
)
async def throttled(ctx: inngest.Context) -> str:
    await ctx.step.sleep("nap", HOUR)
    return "woke"


@client.create_function(fn_id="quick", trigger=inngest.TriggerEvent(event="bulk/quick"))
async def quick(ctx: inngest.Context) -> int:
    return int(await ctx.step.run("add", lambda: ctx.event.data["n"] + 1))


functions = [nap, bystander, throttled, quick]
