"""A call that ends with no answer, by an exception the engine did not expect, is a failed
attempt or a retried job: never a run left waiting for a call no one makes again."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

import mainspring as inngest
from mainspring.engine import ai_gateway, dispatch
from tests.conftest import EngineFactory, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def test_a_cancelled_error_no_one_asked_for_is_a_failed_attempt(
    make_engine: EngineFactory,
) -> None:
    """A middleware raises ``asyncio.CancelledError`` out of the call: before, the job
    ended with no record and the run stayed Running."""
    responses: list[int] = []

    class CancelsOnce(inngest.Middleware):
        async def before_response(self) -> None:
            responses.append(1)
            if len(responses) == 1:
                raise asyncio.CancelledError()

    client = inngest.Client(app_id="unanswered", middleware=[CancelsOnce])

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> int:
        return await ctx.step.run("a", lambda: 1)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == 1
    assert len(responses) >= 2


async def test_a_fault_between_a_first_call_and_its_record_is_retried(
    db_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call answered, then something failed before its unit (here the AI
    gateway's pass over the answer): the job is retried from the store, and the run must
    not look started to it (its start job would be taken for a stale copy)."""
    monkeypatch.setattr(dispatch, "RETRY_SECONDS", 0.01)
    resolve = ai_gateway.resolve
    faults: list[int] = []

    async def fails_once(response: Any) -> Any:
        if not faults:
            faults.append(1)
            raise RuntimeError("planted: the store went away")
        return await resolve(response)

    monkeypatch.setattr(ai_gateway, "resolve", fails_once)
    client = inngest.Client(app_id="unanswered")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> int:
        return await ctx.step.run("a", lambda: 1)

    async with inngest.Engine(client, [fn], database=db_path, retry_backoff=0.01) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"), timeout=5)
    assert faults == [1]
    assert run.status == "Completed", run.error
    assert run.output == 1
