"""An app served over HTTP by uvicorn, for the dev-server e2e test.

Run it with ``MAINSPRING_DEV=1`` and ``MAINSPRING_API_BASE_URL`` set to the server, then
``python -m uvicorn tests.e2e.http_app:app``.
"""

from __future__ import annotations

import mainspring as inngest
from mainspring.sdk.serve.asgi import serve

client = inngest.Client(app_id="http-app")


@client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="app/greet"))
async def greet(ctx: inngest.Context) -> dict[str, object]:
    name = await ctx.step.run("name", lambda: str(ctx.event.data["name"]).title())
    pair = await ctx.group.parallel(
        (
            lambda: ctx.step.run("hello", lambda: f"hello {name}"),
            lambda: ctx.step.run("bye", lambda: f"bye {name}"),
        )
    )
    return {"name": name, "said": list(pair)}


@client.create_function(fn_id="greet-sync", trigger=inngest.TriggerEvent(event="app/greet"))
def greet_sync(ctx: inngest.ContextSync) -> str:
    return ctx.step.run("shout", lambda: str(ctx.event.data["name"]).upper())


app = serve(client, [greet, greet_sync])
