"""The three benchmark functions (workloads a/b/c), defined once for every Mainspring
system: the embedded engine (`mainspring_workloads.py`) and our SDK over HTTP
(`http_apps/mainspring_app.py`), so their figures differ by the transport alone."""

from __future__ import annotations

import functools
from typing import Any

import mainspring


async def trivial(i: int) -> int:
    return i


def define(client: mainspring.Client) -> list[mainspring.Function[Any]]:
    """`seq` (n sequential steps), `fan` (n parallel steps, then a join) and `one`."""

    @client.create_function(fn_id="seq", trigger=mainspring.TriggerEvent(event="bench/seq"))
    async def seq(ctx: mainspring.Context) -> int:
        total = 0
        for i in range(ctx.event.data["n"]):
            total += await ctx.step.run(f"s{i}", trivial, i)
        return total

    @client.create_function(fn_id="fan", trigger=mainspring.TriggerEvent(event="bench/fan"))
    async def fan(ctx: mainspring.Context) -> int:
        results = await ctx.group.parallel(
            tuple(
                functools.partial(ctx.step.run, f"p{i}", trivial, i)
                for i in range(ctx.event.data["n"])
            )
        )
        return sum(results)

    @client.create_function(fn_id="one", trigger=mainspring.TriggerEvent(event="bench/one"))
    async def one(ctx: mainspring.Context) -> int:
        return await ctx.step.run("s0", trivial, ctx.event.data["i"])

    return [seq, fan, one]
