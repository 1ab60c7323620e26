"""``POST /v1/checkpoint/{run_id}/async`` (protocol §13): a checkpointing SDK records the
steps of the call it is answering, and the call's answer then goes on from them.

The app is our SDK on loopback (:class:`LoopbackApp`); on the calls a test picks, it acts
as a checkpointing SDK instead: it posts checkpoints to the server's API (in memory, on
the same engine) and answers what the official TypeScript SDK answers after them.
"""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import orjson

import mainspring as inngest
from mainspring.protocol.step_ids import hash_step_id
from mainspring.server.app import create_app
from tests.integration.loopback_app import SDK, Answer, Call, LoopbackApp, Reply, running
from tests.integration.test_http_app_failures import two_steps

ONE, TWO = hash_step_id("one"), hash_step_id("two")


def step_run(step_id: str, name: str, data: Any) -> dict[str, Any]:
    """A ``StepRun`` as a checkpointing SDK reports it."""
    return {
        "op": "StepRun",
        "id": step_id,
        "name": name,
        "displayName": name,
        "data": data,
        "userland": {"id": name},
    }


def ops_reply(ops: list[dict[str, Any]], **headers: str) -> Reply:
    return Reply(206, orjson.dumps(ops), {**SDK, "content-type": "application/json", **headers})


class Checkpointer:
    """Posts checkpoints for the call being answered, to the engine's own server."""

    def __init__(self, engine: inngest.Engine) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://server"
        )
        self.answers: list[httpx.Response] = []

    async def post(self, call: Call, steps: list[Any], **fields: Any) -> httpx.Response:
        body = orjson.loads(call.body)
        ctx = body["ctx"]
        payload = {
            "run_id": ctx["run_id"],
            "fn_id": ctx["fn_id"],
            "qi_id": ctx["qi_id"],
            "request_id": call.headers["x-request-id"],
            "steps": steps,
            **fields,
        }
        answer = await self.http.post(f"/v1/checkpoint/{ctx['run_id']}/async", json=payload)
        self.answers.append(answer)
        return answer


async def test_checkpointed_steps_are_recorded_once_and_the_call_goes_on_from_them(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, runs = two_steps("checkpoints", retries=0)
    checkpointer: Checkpointer | None = None

    async def checkpoint_first(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n > 1:
            return await app.forward(call)
        assert checkpointer is not None
        assert orjson.loads(call.body)["ctx"]["qi_id"] == call.headers["x-inngest-job-id"]
        steps = [step_run(ONE, "one", "one-done"), step_run(TWO, "two", "two-done")]
        await checkpointer.post(call, steps)
        await checkpointer.post(call, steps)  # an SDK's retry of a lost answer
        # An SDK that fell back repeats a step already recorded: nothing is recorded twice,
        # and the run goes on.
        return ops_reply([step_run(TWO, "two", "two-done")])

    async with running(tmp_path, client, [fn], checkpoint_first) as (engine, app):
        checkpointer = Checkpointer(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
        stale = await checkpointer.post(app.calls[0], [step_run(ONE, "one", "late")])
        await checkpointer.http.aclose()
    assert done.status == "Completed", done.error
    assert done.output == ["one-done", "two-done"]
    # The SDK ran neither checkpointed step: the next call found both recorded.
    assert runs == {"one": 0, "two": 0}
    assert [(h.user_id, h.output) for h in history] == [("one", "one-done"), ("two", "two-done")]
    first, again = checkpointer.answers[:2]
    assert first.status_code == 200, first.text
    assert first.json()["data"]["recorded"] == 2
    assert again.status_code == 200, again.text
    assert again.json()["data"]["recorded"] == 0
    assert len(app.calls) == 2
    # The call is over: a checkpoint of it now is a stale dispatch.
    assert stale.status_code == 409
    assert "stale dispatch" in stale.json()["error"]


async def test_run_complete_after_checkpoints_finishes_the_run_in_one_call(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, runs = two_steps("checkpoints-complete", retries=0)
    checkpointer: Checkpointer | None = None

    async def all_in_one_call(app: LoopbackApp, n: int, call: Call) -> Answer:
        assert checkpointer is not None
        answer = await checkpointer.post(call, [step_run(ONE, "one", "one-done")])
        assert answer.status_code == 200, answer.text
        answer = await checkpointer.post(call, [step_run(TWO, "two", "two-done")])
        assert answer.status_code == 200, answer.text
        complete = {"op": "RunComplete", "id": hash_step_id("complete"), "data": ["done"]}
        # The last step again, then the end (a fallback's answer): not a stale run.
        return ops_reply([step_run(TWO, "two", "two-done"), complete])

    async with running(tmp_path, client, [fn], all_in_one_call) as (engine, app):
        checkpointer = Checkpointer(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
        await checkpointer.http.aclose()
    assert done.status == "Completed", done.error
    assert done.output == ["done"]
    assert runs == {"one": 0, "two": 0}
    assert [h.user_id for h in history] == ["one", "two"]
    assert len(app.calls) == 1


async def test_checkpoints_that_are_not_the_calls_are_refused(tmp_path: pathlib.Path) -> None:
    client, fn, _ = two_steps("checkpoints-refused", retries=0)
    checkpointer: Checkpointer | None = None
    refusals: dict[str, httpx.Response] = {}

    async def refuse_then_forward(app: LoopbackApp, n: int, call: Call) -> Answer:
        if n == 1:
            assert checkpointer is not None
            one = [step_run(ONE, "one", "forged")]
            refusals["qi_id"] = await checkpointer.post(call, one, qi_id="another-job")
            refusals["request"] = await checkpointer.post(call, one, request_id="old:0")
            refusals["run"] = await checkpointer.post(call, one, run_id="01ANOTHERRUN")
            refusals["op"] = await checkpointer.post(
                call, [{"op": "Sleep", "id": ONE, "opts": {"duration": "1s"}}]
            )
            refusals["shape"] = await checkpointer.post(call, [{"op": "StepRun"}])
            refusals["empty"] = await checkpointer.post(call, [])
        return await app.forward(call)

    async with running(tmp_path, client, [fn], refuse_then_forward) as (engine, _app):
        checkpointer = Checkpointer(engine)
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=5)
        await checkpointer.http.aclose()
    # Nothing forged was recorded: the SDK ran the steps itself.
    assert done.status == "Completed", done.error
    assert done.output == ["one-done", "two-done"]
    statuses = {name: answer.status_code for name, answer in refusals.items()}
    assert statuses == {
        "qi_id": 409,
        "request": 409,
        "run": 400,
        "op": 400,
        "shape": 400,
        "empty": 400,
    }
    assert "not being called now" in refusals["qi_id"].json()["error"]
    assert "Sleep cannot be checkpointed" in refusals["op"].json()["error"]
    assert "steps[0].id" in refusals["shape"].json()["error"]


async def test_the_request_version_an_sdk_answers_with_is_echoed(tmp_path: pathlib.Path) -> None:
    client, fn, _ = two_steps("versions", retries=0)

    async def answer_version_one(app: LoopbackApp, n: int, call: Call) -> Answer:
        reply = await app.forward(call)
        return Reply(reply.status, reply.body, {**reply.headers, "x-inngest-req-version": "1"})

    async with running(tmp_path, client, [fn], answer_version_one) as (engine, app):
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Completed", done.error
    versions = [
        (call.headers["x-inngest-req-version"], orjson.loads(call.body)["version"])
        for call in app.calls
    ]
    assert versions[0] == ("-1", -1)
    assert versions[1:] == [("1", 1)] * (len(versions) - 1)
    assert len(versions) >= 2


async def test_the_checkpoint_api_needs_the_signing_key_and_names_what_is_not_served(
    tmp_path: pathlib.Path,
) -> None:
    key = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    engine = inngest.Engine(inngest.Client(app_id="server"), [], database=tmp_path / "s.db")
    app = create_app(engine, dev=False, signing_key=key, event_keys=frozenset({"ek"}))
    transport = httpx.ASGITransport(app=app)
    body = {"qi_id": "q", "steps": [step_run(ONE, "one", 1)]}
    bearer = {"authorization": f"Bearer {key}"}
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://s") as http:
        anonymous = await http.post("/v1/checkpoint/01RUN/async", json=body)
        unknown = await http.post("/v1/checkpoint/01RUN/async", json=body, headers=bearer)
        sync_mode = await http.post("/v1/checkpoint", json={}, headers=bearer)
        alias = await http.post("/v1/http/runs/01RUN/steps", json={}, headers=bearer)
    assert anonymous.status_code == 401
    assert unknown.status_code == 409, unknown.text
    assert sync_mode.status_code == 404
    assert "sync-mode checkpointing" in sync_mode.json()["error"]
    assert alias.status_code == 404
