"""A step of a race group that fails, is retried and then fails for good calls the
function at once, as its first attempt would have: the retried job keeps the group's mode
and does not wait for the group's other branch (a 60 s sleep here), whether the SDK repeats
the mode on its answer (ours does) or leaves it to the engine (the job's stored mode)."""

from __future__ import annotations

import pathlib

import orjson
import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_step
from tests.integration.loopback_app import Call, LoopbackApp, Reply, running

pytestmark = pytest.mark.backends("sqlite", "postgres")


def race(client: inngest.Client) -> inngest.Function[object]:
    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="go"))
    async def parent(ctx: inngest.Context) -> object:
        def flaky() -> str:
            if ctx.attempt == 0:
                raise RuntimeError("first attempt fails")
            raise inngest.NonRetriableError("second attempt gives up")

        try:
            await ctx.group.parallel(
                (
                    lambda: ctx.step.run("flaky", flaky),
                    lambda: ctx.step.sleep("long", 60_000),
                ),
                parallel_mode=inngest.ParallelMode.RACE,
            )
        except inngest.StepError as err:
            return {"caught": err.message}
        return "not raised"

    return parent


async def finishes_before_the_sleep(engine: inngest.Engine, clock: inngest.ManualClock) -> None:
    [event_id] = await engine.send(inngest.Event(name="go"))
    [run] = await engine.runs(event_id)
    await wait_for_step(engine, run.id, "flaky")
    clock.advance(1)  # the retry's backoff, far short of the sleep
    done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == {"caught": "second attempt gives up"}


async def test_with_the_mode_on_the_answer(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="race-retry")
    clock = inngest.ManualClock()
    async with make_engine(client, [race(client)], clock=clock) as engine:
        await finishes_before_the_sleep(engine, clock)


async def test_with_the_mode_left_to_the_engine(tmp_path: pathlib.Path) -> None:
    client = inngest.Client(app_id="race-retry", is_production=False)
    functions = [race(client)]

    async def without_modes(app: LoopbackApp, _number: int, call: Call) -> Reply:
        reply = await app.forward(call)
        if reply.status != 206:
            return reply
        ops = orjson.loads(reply.body)
        for op in ops:
            if op["op"] != "StepPlanned":  # the planned ops say the group's mode
                (op.get("opts") or {}).pop("parallelMode", None)
        return Reply(reply.status, orjson.dumps(ops), reply.headers)

    clock = inngest.ManualClock()
    async with running(tmp_path, client, functions, without_modes, clock=clock) as (engine, _):
        await finishes_before_the_sleep(engine, clock)
