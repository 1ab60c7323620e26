"""A checkpointing SDK past its max runtime answers ``DiscoveryRequest`` (protocol §13):
the executor calls the function again instead of failing the run."""

from __future__ import annotations

import pathlib

import orjson

import mainspring as inngest
from tests.integration.loopback_app import SDK, Answer, Call, LoopbackApp, Reply, running
from tests.integration.test_http_app_failures import two_steps


async def test_a_discovery_request_op_calls_the_function_again(tmp_path: pathlib.Path) -> None:
    client, fn, runs = two_steps("checkpointing", retries=0)

    async def ask_again_first(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            body = orjson.dumps([{"op": "DiscoveryRequest", "id": ""}])
            return Reply(206, body, {**SDK, "content-type": "application/json"})
        return await app.forward(call)

    async with running(tmp_path, client, [fn], ask_again_first) as (engine, app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    assert done.output == ["one-done", "two-done"]
    assert runs == {"one": 1, "two": 1}
    assert len(app.calls) >= 2
