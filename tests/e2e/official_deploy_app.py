"""An app built with the official ``inngest`` Python SDK (0.5.19) whose deploys drop and
bring back a function, for ``tests/e2e/test_official_deploys.py``.

``napper`` (a step, a durable sleep of :data:`NAP_SECONDS`, a step) is served unless
``OFFICIAL_DEPLOY_WITHOUT_NAPPER=1``; ``other`` always is. Run it with ``INNGEST_DEV=1`` and
``INNGEST_BASE_URL`` set to a ``mainspring dev`` server, then
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


@client.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="deploy/other"))
async def other(ctx: inngest.Context) -> str:
    return "ok"


functions: list[inngest.Function[Any]] = (
    [other] if os.environ.get("OFFICIAL_DEPLOY_WITHOUT_NAPPER") == "1" else [napper, other]
)

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)
