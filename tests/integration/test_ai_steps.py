"""``step.ai.infer`` on the embedded engine: the engine calls the provider (a fake one on
127.0.0.1), records its answer as the step's result, retries a failed call like a failed
``step.run``, and never keeps the key (not in the store, not in the logs).

Each scenario runs over both transports (in process, and HTTP through the serve handler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import mainspring as inngest
from mainspring.experimental import ai
from tests.ai_provider import FakeProvider, fake_provider
from tests.conftest import EngineFactory, run_to_end, store_rows

#: The provider key; it must never reach the store or a log line.
KEY = "sk-test-Zq8v3Lw0Secret71"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


async def _stored_text(engine: inngest.Engine) -> str:
    """Every value of every table of the engine's store, as text."""
    tables = await store_rows(engine, "SELECT name FROM sqlite_master WHERE type = 'table'")
    parts: list[str] = []
    for (table,) in tables:
        for row in await store_rows(engine, f'SELECT * FROM "{table}"'):
            for value in row:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                parts.append(str(text))
    return "\n".join(parts)


def _question(tag: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"question {tag}"}]}


#: Adapter, the path it posts to, and how it sends the key.
ADAPTERS = {
    "openai": (ai.openai.Adapter, "/v1/chat/completions", "bearer"),
    "anthropic": (ai.anthropic.Adapter, "/v1/messages", "x-api-key"),
    "gemini": (ai.gemini.Adapter, "/v1/models/m-1:generateContent", "query"),
    "grok": (ai.grok.Adapter, "/v1/chat/completions", "bearer"),
    "deepseek": (ai.deepseek.Adapter, "/v1/chat/completions", "bearer"),
}


@pytest.mark.parametrize("name", list(ADAPTERS))
async def test_infer_calls_the_provider_and_returns_its_answer(
    make_engine: EngineFactory, provider: FakeProvider, name: str
) -> None:
    adapter_type, path, auth = ADAPTERS[name]
    base = f"{provider.url}/{name}/v1"
    client = inngest.Client(app_id=f"ai-{name}")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        adapter = adapter_type(auth_key=KEY, model="m-1", base_url=base)
        answer = await ctx.step.ai.infer("ask", adapter=adapter, body=_question(name))
        # A step after it: the function is called again and replays the recorded answer.
        upper = await ctx.step.run("upper", lambda: str(answer["choices"]).upper())
        return {"answer": answer, "upper": upper}

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    [seen] = provider.seen(f"/{name}/")
    assert seen.method == "POST"
    assert seen.path == f"/{name}{path}"
    assert seen.headers["content-type"] == "application/json"
    # The adapter filled in the model; the body is the function's.
    assert seen.body == {**_question(name), "model": "m-1"}
    if auth == "bearer":
        assert seen.headers["authorization"] == f"Bearer {KEY}"
    elif auth == "x-api-key":
        assert seen.headers["x-api-key"] == KEY
        assert seen.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in seen.headers
    else:
        assert seen.query == {"key": KEY}
        assert "authorization" not in seen.headers
    content = f"echo: question {name}"
    assert run.output["answer"]["choices"][0]["message"]["content"] == content
    assert run.output["answer"]["model"] == "m-1"
    assert [(h.user_id, h.op) for h in history] == [("ask", "AIGateway"), ("upper", "StepRun")]
    assert history[0].output == run.output["answer"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_failed_call_is_retried_and_the_key_is_kept_nowhere(
    make_engine: EngineFactory,
    provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
    flavour: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    base = f"{provider.url}/fail-once/{flavour}/v1"
    client = inngest.Client(app_id=f"ai-retry-{flavour}")
    adapter = ai.openai.Adapter(auth_key=KEY, model="m-2", base_url=base)

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def fn(ctx: inngest.Context) -> object:
            return await ctx.step.ai.infer("ask", adapter=adapter, body=_question("r"))

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def fn(ctx: inngest.ContextSync) -> object:
            return ctx.step.ai.infer("ask", adapter=adapter, body=_question("r"))

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
        stored = await _stored_text(engine)
    assert run.status == "Completed", run.error
    # Not in any table, not in any log line (the failed attempt was logged, so the check
    # looks at real lines), although the provider echoed it in its error body.
    assert KEY not in stored
    assert "GatewayError" in caplog.text
    assert KEY not in caplog.text
    assert all(KEY not in str(r.args) for r in caplog.records)
    assert run.output["choices"][0]["message"]["content"] == "echo: question r"
    # Two calls: a 500, then the answer.
    assert len(provider.seen(f"/fail-once/{flavour}/")) == 2
    # The failed attempt is in the history like any step's, then the result.
    assert [(h.user_id, h.op, h.attempt) for h in history] == [
        ("ask", "StepError", 0),
        ("ask", "AIGateway", 1),
    ]
    error = history[0].error
    assert error is not None
    assert error["name"] == "GatewayError"
    assert "HTTP 500" in error["message"]
    # The provider's echo of the key is redacted in the stored error.
    assert "[redacted]" in error["message"]


async def test_a_refused_request_fails_the_step_at_once(
    make_engine: EngineFactory, provider: FakeProvider
) -> None:
    # 401: the same key gets the same refusal; no retry although retries remain.
    client = inngest.Client(app_id="ai-refused")
    adapter = ai.anthropic.Adapter(
        auth_key=KEY, model="m-3", base_url=f"{provider.url}/status-401/v1"
    )

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
    async def fn(ctx: inngest.Context) -> object:
        try:
            await ctx.step.ai.infer("ask", adapter=adapter, body=_question("x"))
        except inngest.StepError as exc:
            return {"name": exc.name, "message": exc.message}
        return None

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        stored = await _stored_text(engine)
    assert run.status == "Completed", run.error
    assert run.output["name"] == "GatewayError"
    assert "HTTP 401" in run.output["message"]
    assert "/status-401/v1/messages" in run.output["message"]
    assert len(provider.seen("/status-401/")) == 1
    assert KEY not in run.output["message"]
    assert KEY not in stored


async def test_ai_steps_in_a_parallel_group(
    make_engine: EngineFactory, provider: FakeProvider
) -> None:
    client = inngest.Client(app_id="ai-group")
    adapter = ai.gemini.Adapter(auth_key=KEY, model="m-4", base_url=f"{provider.url}/group")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        first, second, plain = await asyncio.gather(
            ctx.step.ai.infer("a", adapter=adapter, body=_question("a")),
            ctx.step.ai.infer("b", adapter=adapter, body=_question("b")),
            ctx.step.run("c", lambda: "c"),
        )
        answers: list[Any] = [first, second]  # infer is typed dict[str, object]
        contents = [x["choices"][0]["message"]["content"] for x in answers]
        return [*contents, plain]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
        stored = await _stored_text(engine)
    assert run.status == "Completed", run.error
    assert run.output == ["echo: question a", "echo: question b", "c"]
    assert len(provider.seen("/group/")) == 2
    assert sorted((h.user_id, h.op) for h in history) == [
        ("a", "AIGateway"),
        ("b", "AIGateway"),
        ("c", "StepRun"),
    ]
    assert KEY not in stored


async def test_what_the_engine_does_not_do_is_refused_by_name(
    make_engine: EngineFactory, provider: FakeProvider
) -> None:
    client = inngest.Client(app_id="ai-unsupported")
    base = f"{provider.url}/nope/v1"

    class Cohere(ai.openai.Adapter):
        def format(self) -> str:
            return "cohere"

    cases = [
        ("stream", ai.openai.Adapter, {**_question("s"), "stream": True}),
        ("format", Cohere, _question("f")),
    ]

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def fn(ctx: inngest.Context) -> object:
        messages: list[str] = []
        for step_id, adapter_type, body in cases:
            adapter = adapter_type(auth_key=KEY, model="m-5", base_url=base)
            try:
                await ctx.step.ai.infer(step_id, adapter=adapter, body=body)
            except inngest.StepError as exc:
                messages.append(exc.message)
        return messages

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    stream, unknown = run.output
    assert "streaming responses (body.stream) are not supported" in stream
    assert "format 'cohere' is not supported" in unknown
    assert provider.seen("/nope/") == []


@pytest.mark.parametrize("outcome", ["answer", "failure"])
async def test_a_replay_hands_the_recorded_result_back(
    make_engine: EngineFactory, provider: FakeProvider, outcome: str
) -> None:
    # The sleep parks the run: the engine drops the suspended function, and the call after
    # the sleep replays from the store. The recorded answer (or final failure) must go back
    # to the AI step, as an AI step's, without another provider call.
    client = inngest.Client(app_id=f"ai-replay-{outcome}")
    path = "replay" if outcome == "answer" else "status-400"
    adapter = ai.openai.Adapter(auth_key=KEY, model="m-6", base_url=f"{provider.url}/{path}/v1")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        try:
            answer = await ctx.step.ai.infer("ask", adapter=adapter, body=_question("p"))
        except inngest.StepError as exc:
            answer = {"error": exc.name}
        await ctx.step.sleep("nap", 1)
        return answer

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    if outcome == "answer":
        assert run.output["choices"][0]["message"]["content"] == "echo: question p"
    else:
        assert run.output == {"error": "GatewayError"}
    assert len(provider.seen(f"/{path}/")) == 1


async def test_a_call_failing_on_every_attempt_raises_in_the_function(
    make_engine: EngineFactory, provider: FakeProvider
) -> None:
    client = inngest.Client(app_id="ai-exhausted")
    adapter = ai.openai.Adapter(auth_key=KEY, model="m-7", base_url=f"{provider.url}/status-503/v1")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def fn(ctx: inngest.Context) -> object:
        try:
            await ctx.step.ai.infer("ask", adapter=adapter, body=_question("z"))
        except inngest.StepError as exc:
            return exc.name
        return None

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == "GatewayError"
    assert len(provider.seen("/status-503/")) == 2  # retries=1: two attempts
    assert [(h.user_id, h.op, h.attempt) for h in history] == [
        ("ask", "StepError", 0),
        ("ask", "AIGateway", 1),
    ]
    final = history[1].error
    assert final is not None
    assert "HTTP 503" in final["message"]
