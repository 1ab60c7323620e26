"""Functions for the CLI's end-to-end tests: a parallel group, a failing step, a slow run."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import mainspring as inngest

client = inngest.Client(app_id="cli-test", is_production=False)


async def _work(label: str) -> str:
    await asyncio.sleep(0.3)
    return label


@client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event="cli/parallel"))
async def parallel(ctx: inngest.Context) -> list[str]:
    first = await ctx.step.run("prepare", _work, "prepared")
    left, right = await ctx.group.parallel(
        (
            lambda: ctx.step.run("left-branch", _work, "left"),
            lambda: ctx.step.run("right-branch", _work, "right"),
        )
    )
    return [first, left, right]


def _explode() -> None:
    raise ValueError("the card was declined")


@client.create_function(
    fn_id="failing", trigger=inngest.TriggerEvent(event="cli/failing"), retries=0
)
async def failing(ctx: inngest.Context) -> None:
    await ctx.step.run("charge-card", _explode)


@client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="cli/slow"))
async def slow(ctx: inngest.Context) -> Any:
    await ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return "woke"


functions = [parallel, failing, slow]
