"""An official-SDK (``inngest`` 0.5.19) app whose functions make ``step.ai.infer`` calls, for
``tests/e2e/test_official_ai.py``. Served by FastAPI on uvicorn against ``mainspring dev``.

Events name the provider's base URL (the test's fake provider) in ``data.base_url``; the
key is this module's constant, so that it reaches the server only inside the ops.
"""

from __future__ import annotations

from typing import Any

import fastapi
import inngest
import inngest.fast_api
from inngest.experimental import ai
from inngest.experimental.ai import gemini

from tests.ai_provider import OFFICIAL_APP_KEY as KEY

client = inngest.Inngest(app_id="official-ai-app", is_production=False)


def _event(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=f"official-ai/{name}")


def _base(ctx: inngest.Context | inngest.ContextSync) -> str:
    base = ctx.event.data["base_url"]
    assert isinstance(base, str)
    return base


def _question(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _content(answer: dict[str, object]) -> object:
    choices = answer["choices"]
    assert isinstance(choices, list)
    return choices[0]["message"]["content"]


@client.create_function(fn_id="steps", trigger=_event("steps"))
async def steps(ctx: inngest.Context) -> int:
    """The readiness probe of ``tests.e2e.support.official_servers``."""
    return 0


@client.create_function(fn_id="infer", trigger=_event("infer"))
async def infer(ctx: inngest.Context) -> dict[str, object]:
    adapter = ai.openai.Adapter(auth_key=KEY, model="gpt-fake", base_url=_base(ctx))
    answer = await ctx.step.ai.infer("ask", adapter=adapter, body=_question("async"))

    async def shout() -> str:
        return str(_content(answer)).upper()

    # A step after it: the SDK replays the recorded answer to reach this one.
    loud = await ctx.step.run("shout", shout)
    return {"answer": answer, "loud": loud}


@client.create_function(fn_id="infer-sync", trigger=_event("infer.sync"))
def infer_sync(ctx: inngest.ContextSync) -> dict[str, object]:
    adapter = ai.anthropic.Adapter(auth_key=KEY, model="claude-fake", base_url=_base(ctx))
    answer = ctx.step.ai.infer("ask", adapter=adapter, body=_question("sync"))
    loud = ctx.step.run("shout", lambda: str(_content(answer)).upper())
    return {"content": _content(answer), "loud": loud}


@client.create_function(fn_id="flaky", trigger=_event("flaky"), retries=2)
async def flaky(ctx: inngest.Context) -> dict[str, object]:
    adapter = ai.openai.Adapter(auth_key=KEY, model="gpt-fake", base_url=_base(ctx))
    answer = await ctx.step.ai.infer("ask", adapter=adapter, body=_question("again"))
    return {"content": _content(answer), "attempt": ctx.attempt}


@client.create_function(fn_id="refused", trigger=_event("refused"), retries=3)
async def refused(ctx: inngest.Context) -> dict[str, object]:
    adapter = ai.openai.Adapter(auth_key=KEY, model="gpt-fake", base_url=_base(ctx))
    try:
        await ctx.step.ai.infer("ask", adapter=adapter, body=_question("no"))
    except inngest.StepError as exc:
        return {"name": exc.name, "message": exc.message}
    return {}


@client.create_function(fn_id="parallel", trigger=_event("parallel"))
async def parallel(ctx: inngest.Context) -> list[object]:
    adapter = gemini.Adapter(auth_key=KEY, model="gemini-fake", base_url=_base(ctx))
    answers = await ctx.group.parallel(
        (
            lambda: ctx.step.ai.infer("a", adapter=adapter, body=_question("a")),
            lambda: ctx.step.ai.infer("b", adapter=adapter, body=_question("b")),
        )
    )
    return [_content(answer) for answer in answers]


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [steps, infer, infer_sync, flaky, refused, parallel])
