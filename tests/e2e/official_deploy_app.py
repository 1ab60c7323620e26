"""An app built with the official ``inngest`` Python SDK (0.5.19) whose deploys drop and
bring back a function, for ``tests/e2e/test_official_deploys.py``.

``napper`` (a step, a durable sleep of :data:`NAP_SECONDS`, a step) is served unless
``OFFICIAL_DEPLOY_WITHOUT_NAPPER=1``; ``other`` always is. ``grouped`` runs a parallel group
whose second member keeps failing (retried after :data:`RETRY_SECONDS`) in the first
version, and is renamed in the second (``OFFICIAL_DEPLOY_VERSION=2``). Run it with
``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` set to a ``mainspring dev`` server, then
``python -m uvicorn tests.e2e.official_deploy_app:app``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import fastapi
import inngest
import inngest.fast_api

APP_ID = "official-deploy"
NAP_SECONDS = 5.0

client = inngest.Inngest(app_id=APP_ID, is_production=False)


async def _value(x: int) -> int:
    return x


@client.create_function(fn_id="napper", trigger=inngest.TriggerEvent(event="deploy/nap"))
async def napper(ctx: inngest.Context) -> list[int]:
    a = await ctx.step.run("a", _value, 1)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=NAP_SECONDS))
    b = await ctx.step.run("b", _value, 2)
    return [a, b]


RETRY_SECONDS = 4
SECOND_VERSION = os.environ.get("OFFICIAL_DEPLOY_VERSION") == "2"


async def _fails() -> str:
    raise inngest.RetryAfterError("p2 fails in the first version", RETRY_SECONDS * 1000)


@client.create_function(
    fn_id="grouped", trigger=inngest.TriggerEvent(event="deploy/group"), retries=3
)
async def grouped(ctx: inngest.Context) -> tuple[str, ...]:
    async def one() -> str:
        return "one"

    async def new() -> str:
        return "new"

    if SECOND_VERSION:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p1", one), lambda: ctx.step.run("p2x", new))
        )
    return await ctx.group.parallel(
        (lambda: ctx.step.run("p1", one), lambda: ctx.step.run("p2", _fails))
    )


@client.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="deploy/other"))
async def other(ctx: inngest.Context) -> str:
    return "ok"


functions: list[inngest.Function[Any]] = (
    [other, grouped]
    if os.environ.get("OFFICIAL_DEPLOY_WITHOUT_NAPPER") == "1"
    else [napper, other, grouped]
)

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)
