"""The functions the PostgreSQL cluster test runs on several server processes at once
(``mainspring dev tests.e2e.cluster_app:functions --database postgresql://...``).

Every step handler logs its execution to a file of its process's own in the folder named
by ``CLUSTER_EFFECTS`` (``run step start|end nonce pid epoch-ms``, one line each, appended
and flushed), and returns its nonce, so that the test can tell which execution the
database recorded and what else ran.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import mainspring as inngest

client = inngest.Client(app_id="cluster", is_production=False)

_FOLDER = pathlib.Path(os.environ.get("CLUSTER_EFFECTS", "."))


def _log(run: str, step: str, what: str, nonce: str) -> None:
    line = f"{run} {step} {what} {nonce} {os.getpid()} {int(time.time() * 1000)}\n"
    with (_FOLDER / f"effects-{os.getpid()}.log").open("a") as out:
        out.write(line)
        out.flush()


async def _work(run: str, step: str, value: int, seconds: float = 0.01) -> dict[str, Any]:
    nonce = secrets.token_hex(6)
    _log(run, step, "start", nonce)
    await asyncio.sleep(seconds)
    _log(run, step, "end", nonce)
    return {"v": value, "nonce": nonce}


def _key(ctx: inngest.Context) -> str:
    return str(ctx.event.data["key"])


@client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="cluster/seq"))
async def seq(ctx: inngest.Context) -> list[int]:
    key = _key(ctx)
    out = []
    for i in range(3):
        out.append((await ctx.step.run(f"s{i}", _work, key, f"s{i}", i, 0.02))["v"])
    return out


@client.create_function(fn_id="fan", trigger=inngest.TriggerEvent(event="cluster/fan"))
async def fan(ctx: inngest.Context) -> list[int]:
    key = _key(ctx)

    def branch(i: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: ctx.step.run(f"p{i}", _work, key, f"p{i}", i, 0.02)

    results = await ctx.group.parallel((branch(0), branch(1), branch(2), branch(3)))
    return [result["v"] for result in results]


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="cluster/nap"))
async def nap(ctx: inngest.Context) -> list[int]:
    key = _key(ctx)
    first = await ctx.step.run("before", _work, key, "before", 1)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    second = await ctx.step.run("after", _work, key, "after", 2)
    return [first["v"], second["v"]]


@client.create_function(fn_id="wait", trigger=inngest.TriggerEvent(event="cluster/wait"))
async def wait(ctx: inngest.Context) -> list[Any]:
    key = _key(ctx)
    armed = await ctx.step.run("armed", _work, key, "armed", 0)
    event = await ctx.step.wait_for_event(
        "resume",
        event="cluster/resume",
        if_exp="async.data.key == event.data.key",
        timeout=datetime.timedelta(seconds=60),
    )
    return [armed["v"], None if event is None else event.data["key"]]


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="cluster/child"))
async def child(ctx: inngest.Context) -> int:
    return int((await ctx.step.run("c", _work, _key(ctx), "c", 7))["v"])


@client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="cluster/parent"))
async def parent(ctx: inngest.Context) -> int:
    key = _key(ctx)
    got = await ctx.step.invoke("call", function=child, data={"key": f"{key}-child"})
    return int(got) + 1


@client.create_function(
    fn_id="limited",
    trigger=inngest.TriggerEvent(event="cluster/limited"),
    concurrency=[inngest.Concurrency(limit=1)],
)
async def limited(ctx: inngest.Context) -> int:
    return int((await ctx.step.run("only", _work, _key(ctx), "only", 5, 0.03))["v"])


functions = [seq, fan, nap, wait, child, parent, limited]
