"""The benchmark functions written with the official ``inngest`` Python SDK (0.5.19) and
served by its FastAPI adapter on uvicorn (system "inngest-py-http").

Run it with ``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` set to a Mainspring server, then
``python -m uvicorn bench.http_apps.inngest_app:app``; `bench/http_workloads.py` does that.
"""

from __future__ import annotations

import functools
from typing import Any

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="bench-official", is_production=False)


async def trivial(i: int) -> int:
    return i


def _int(value: object) -> int:
    # Event data is typed `object` by the official SDK; the benchmark only ever sends ints.
    assert isinstance(value, int), value
    return value


# The same functions as bench/http_apps/mainspring_app.py, step for step: distinct step ids in
# (a), so neither SDK pays for deduplicating repeated ids.


@client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="bench/seq"))
async def seq(ctx: inngest.Context) -> int:
    total = 0
    for i in range(_int(ctx.event.data["n"])):
        total += await ctx.step.run(f"s{i}", trivial, i)
    return total


@client.create_function(fn_id="fan", trigger=inngest.TriggerEvent(event="bench/fan"))
async def fan(ctx: inngest.Context) -> int:
    results = await ctx.group.parallel(
        tuple(
            functools.partial(ctx.step.run, f"p{i}", trivial, i)
            for i in range(_int(ctx.event.data["n"]))
        )
    )
    return sum(results)


@client.create_function(fn_id="one", trigger=inngest.TriggerEvent(event="bench/one"))
async def one(ctx: inngest.Context) -> int:
    return await ctx.step.run("s0", trivial, _int(ctx.event.data["i"]))


functions: list[inngest.Function[Any]] = [seq, fan, one]

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)
