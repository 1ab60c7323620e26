"""The GraphQL API (``/v0/gql``) and ``GET /dev``, over ASGI against a real engine: the
queries tools run against the reference dev server (protocol §12) and the dashboard's lists."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

import mainspring as inngest
from mainspring.engine.engine import Engine
from mainspring.server.app import create_app

client = inngest.Client(app_id="gql-app", is_production=False)
flaky_calls: list[int] = []


@client.create_function(fn_id="checkout", trigger=inngest.TriggerEvent(event="shop/checkout"))
async def checkout(ctx: inngest.Context) -> dict[str, Any]:
    total = await ctx.step.run("price", lambda: ctx.event.data["qty"] * 3)
    packed, billed = await ctx.group.parallel(
        (
            lambda: ctx.step.run("pack", lambda: "packed"),
            lambda: ctx.step.run("bill", lambda: {"amount": total}),
        )
    )
    return {"total": total, "steps": [packed, billed]}


def _flaky() -> str:
    flaky_calls.append(1)
    if len(flaky_calls) == 1:
        raise ValueError("first try fails")
    return "second try"


@client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event="shop/flaky"), retries=2)
async def flaky(ctx: inngest.Context) -> str:
    return await ctx.step.run("wobbly", _flaky)


def _boom() -> None:
    raise inngest.NonRetriableError("card declined")


@client.create_function(fn_id="doomed", trigger=inngest.TriggerEvent(event="shop/doomed"))
async def doomed(ctx: inngest.Context) -> None:
    await ctx.step.run("charge", _boom)


@client.create_function(fn_id="rescued", trigger=inngest.TriggerEvent(event="shop/rescued"))
async def rescued(ctx: inngest.Context) -> str:
    try:
        await ctx.step.invoke("call-doomed", function=doomed)
    except inngest.StepError:
        return "rescued"
    return "not failed"


gate = asyncio.Event()


@client.create_function(fn_id="patient", trigger=inngest.TriggerEvent(event="shop/patient"))
async def patient(ctx: inngest.Context) -> None:
    await ctx.step.run("prep", lambda: "ready")
    await ctx.group.parallel(
        (
            lambda: ctx.step.sleep("nap", datetime.timedelta(hours=1)),
            lambda: ctx.step.wait_for_event(
                "approval", event="shop/approved", timeout=datetime.timedelta(hours=1)
            ),
            lambda: ctx.step.run("slow", gate.wait),
        )
    )


class Api:
    def __init__(self, http: httpx.AsyncClient, engine: Engine) -> None:
        self.http = http
        self.engine = engine

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = await self.http.post("/v0/gql", json={"query": query, "variables": variables})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.gql(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def run_of(self, name: str, data: dict[str, Any]) -> tuple[str, str]:
        [event_id] = await self.engine.send(inngest.Event(name=name, data=data))
        [run] = await self.engine.runs(event_id)
        await self.engine.wait(run.id, timeout=10)
        return event_id, run.id


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[Api]:
    flaky_calls.clear()
    gate.clear()
    engine = Engine(
        client,
        [checkout, flaky, doomed, patient, rescued],
        database=tmp_path / "gql.db",
        durability="normal",
        retry_backoff=0.01,
    )
    app = create_app(engine, start_options={"port": 8288})
    async with (
        engine,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http,
    ):
        yield Api(http, engine)


async def test_run_status_output_and_trigger_payloads(api: Api) -> None:
    event_id, run_id = await api.run_of("shop/checkout", {"qty": 4})
    data = await api.data(
        "query($id: String!) { run(runID: $id) { id status output functionID sourceID } "
        "runTrigger(runID: $id) { IDs payloads eventName isBatch } }",
        id=run_id,
    )
    run = data["run"]
    assert run["status"] == "COMPLETED"
    assert orjson.loads(run["output"]) == {"total": 12, "steps": ["packed", {"amount": 12}]}
    assert (run["id"], run["functionID"], run["sourceID"]) == (run_id, "gql-app-checkout", event_id)
    trigger = data["runTrigger"]
    assert trigger["IDs"] == [event_id]
    assert trigger["eventName"] == "shop/checkout"
    [payload] = trigger["payloads"]
    assert orjson.loads(payload)["data"] == {"qty": 4}


async def test_trace_spans_give_each_steps_output_by_id(api: Api) -> None:
    _, run_id = await api.run_of("shop/checkout", {"qty": 2})
    data = await api.data(
        "query($id: String!) { run(runID: $id) { trace { name status isRoot outputID "
        "childrenSpans { name status stepOp attempts outputID startedAt endedAt duration } } } }",
        id=run_id,
    )
    root = data["run"]["trace"]
    assert root["isRoot"] is True
    assert root["status"] == "COMPLETED"
    spans = root["childrenSpans"]
    assert sorted(s["name"] for s in spans) == ["bill", "pack", "price"]
    assert spans[0]["name"] == "price"  # recorded first
    assert all(s["status"] == "COMPLETED" and s["stepOp"] == "RUN" for s in spans)
    assert all(s["attempts"] == 0 and s["duration"] is not None for s in spans)
    outputs = {}
    for span in [*spans, root]:
        out = await api.data(
            "query($o: String!) { runTraceSpanOutputByID(outputID: $o) { data } }",
            o=span["outputID"],
        )
        outputs[span["name"]] = orjson.loads(out["runTraceSpanOutputByID"]["data"])
    assert outputs == {
        "price": 6,
        "pack": "packed",
        "bill": {"amount": 6},
        "checkout": {"total": 6, "steps": ["packed", {"amount": 6}]},
    }
    # runTrace is the same root span, asked for by run id alone.
    same = await api.data("query($id: String!) { runTrace(runID: $id) { name } }", id=run_id)
    assert same["runTrace"]["name"] == "checkout"


async def test_a_retried_step_shows_each_attempt_with_its_error(api: Api) -> None:
    _, run_id = await api.run_of("shop/flaky", {})
    data = await api.data(
        "query($id: String!) { runTrace(runID: $id) { childrenSpans { name status attempts "
        "childrenSpans { name status outputID } } } }",
        id=run_id,
    )
    [step] = data["runTrace"]["childrenSpans"]
    assert (step["name"], step["status"], step["attempts"]) == ("wobbly", "COMPLETED", 1)
    first, second = step["childrenSpans"]
    assert (first["name"], first["status"]) == ("Attempt 0", "FAILED")
    assert (second["name"], second["status"]) == ("Attempt 1", "COMPLETED")
    query = (
        "query($o: String!) { runTraceSpanOutputByID(outputID: $o) "
        "{ data error { name message } } }"
    )
    failed = (await api.data(query, o=first["outputID"]))["runTraceSpanOutputByID"]
    assert failed["data"] is None
    assert failed["error"]["name"] == "ValueError"
    assert "first try fails" in failed["error"]["message"]
    ok = (await api.data(query, o=second["outputID"]))["runTraceSpanOutputByID"]
    assert orjson.loads(ok["data"]) == "second try"


async def test_a_step_whose_recorded_result_is_an_error_shows_as_failed(api: Api) -> None:
    """An invoke whose child failed is recorded under its own op (so is an AI step that
    failed): its span is FAILED all the same, not COMPLETED."""
    _, run_id = await api.run_of("shop/rescued", {})
    data = await api.data(
        "query($id: String!) { run(runID: $id) { status trace { childrenSpans "
        "{ name status stepOp } } } }",
        id=run_id,
    )
    assert data["run"]["status"] == "COMPLETED"
    [invoke] = data["run"]["trace"]["childrenSpans"]
    assert (invoke["name"], invoke["status"]) == ("call-doomed", "FAILED")


async def test_a_failed_run_gives_its_error_as_output(api: Api) -> None:
    _, run_id = await api.run_of("shop/doomed", {})
    data = await api.data(
        "query($id: String!) { run(runID: $id) { status output trace { outputID "
        "childrenSpans { name status outputID } } } }",
        id=run_id,
    )
    run = data["run"]
    assert run["status"] == "FAILED"
    assert "card declined" in orjson.loads(run["output"])["message"]
    # The failed step, then the function's own failed call (the error it let through).
    step, call = run["trace"]["childrenSpans"]
    assert (step["name"], step["status"]) == ("charge", "FAILED")
    assert (call["name"], call["status"]) == ("Function error", "FAILED")
    for output_id in (step["outputID"], call["outputID"], run["trace"]["outputID"]):
        out = await api.data(
            "query($o: String!) { runTraceSpanOutputByID(outputID: $o) { error { message } } }",
            o=output_id,
        )
        assert "card declined" in out["runTraceSpanOutputByID"]["error"]["message"]


async def test_a_running_runs_trace_shows_what_it_waits_on(api: Api) -> None:
    [event_id] = await api.engine.send(inngest.Event(name="shop/patient"))
    [run] = await api.engine.runs(event_id)
    query = (
        "query($id: String!) { run(runID: $id) { status trace { status childrenSpans "
        "{ name status stepOp startedAt endedAt outputID } } } }"
    )
    for _ in range(300):
        found = (await api.data(query, id=run.id))["run"]
        if len(found["trace"]["childrenSpans"]) == 4:
            break
        await asyncio.sleep(0.01)
    assert found["status"] == "RUNNING"
    assert found["trace"]["status"] == "RUNNING"
    spans = {s["name"]: s for s in found["trace"]["childrenSpans"]}
    assert {n: (s["status"], s["stepOp"]) for n, s in spans.items()} == {
        "prep": ("COMPLETED", "RUN"),
        "nap": ("WAITING", "SLEEP"),
        "approval": ("WAITING", "WAIT_FOR_EVENT"),
        "slow": ("QUEUED", "RUN"),
    }
    assert spans["nap"]["startedAt"] is not None
    assert all(
        spans[n]["endedAt"] is None and spans[n]["outputID"] is None for n in spans if n != "prep"
    )
    jobs = (await api.http.get(f"/v1/runs/{run.id}/jobs")).json()["data"]
    assert {job["kind"] for job in jobs} >= {"sleep", "pause-timeout", "plan"}
    assert (await api.http.get("/v1/runs/01NOPE/jobs")).status_code == 404
    gate.set()
    await api.engine.cancel(run.id)


async def test_an_events_function_runs_and_the_lists(api: Api) -> None:
    event_id, run_id = await api.run_of("shop/checkout", {"qty": 1})
    await api.run_of("shop/doomed", {})
    for _ in range(3):
        await api.run_of("shop/checkout", {"qty": 5})
    data = await api.data(
        "query($id: ID!) { event(query: {eventId: $id}) { id name functionRuns "
        "{ id status functionID name } } }",
        id=event_id,
    )
    event = data["event"]
    assert (event["id"], event["name"]) == (event_id, "shop/checkout")
    assert event["functionRuns"] == [
        {"id": run_id, "status": "COMPLETED", "functionID": "gql-app-checkout", "name": "checkout"}
    ]
    # Runs, newest first, two to a page, followed by cursor.
    query = (
        "query($after: String) { runs(first: 2, after: $after, filter: "
        '{functionIDs: ["gql-app-checkout"], status: [COMPLETED]}, '
        "orderBy: [{field: QUEUED_AT, direction: DESC}]) "
        "{ edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }"
    )
    seen: list[str] = []
    after = None
    while True:
        page = (await api.data(query, after=after))["runs"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 4
    assert seen == sorted(seen, reverse=True)
    assert run_id == seen[-1]
    failed = await api.data(
        "{ runs(filter: {status: [FAILED]}) { edges { node { functionID } } } }"
    )
    assert [e["node"]["functionID"] for e in failed["runs"]["edges"]] == ["gql-app-doomed"]
    events = await api.data('{ events(query: {name: "shop/checkout", limit: 10}) { id } }')
    assert len(events["events"]) == 4
    older = await api.data(
        "query($last: ID) { events(query: {lastEventId: $last}) { id } }",
        last=events["events"][1]["id"],
    )
    assert [e["id"] for e in older["events"]] == [
        e["id"] for e in (await api.data("{ events { id } }"))["events"][2:]
    ]
    apps = await api.data("{ apps { name functions { slug triggers { type value } } } }")
    [app] = apps["apps"]
    assert app["name"] == "gql-app"
    assert {"slug": "gql-app-flaky", "triggers": [{"type": "EVENT", "value": "shop/flaky"}]} in (
        app["functions"]
    )


async def test_bad_queries_are_answered_with_errors_not_500(api: Api) -> None:
    garbage = await api.http.post("/v0/gql", content=b"{not json")
    assert garbage.status_code == 400
    assert "not valid JSON" in garbage.json()["errors"][0]["message"]
    no_query = await api.http.post("/v0/gql", json={"variables": {}})
    assert no_query.status_code == 400
    assert "'query'" in no_query.json()["errors"][0]["message"]
    bad_vars = await api.http.post("/v0/gql", json={"query": "{ apps { name } }", "variables": 3})
    assert bad_vars.status_code == 400
    syntax = await api.gql("{ run(runID: ")
    assert "Syntax Error" in syntax["errors"][0]["message"]
    unknown_field = await api.gql("{ apps { colour } }")
    assert "colour" in unknown_field["errors"][0]["message"]
    missing = await api.data('{ run(runID: "01NOPE") { id } }')
    assert missing == {"run": None}
    bad_output = await api.gql('{ runTraceSpanOutputByID(outputID: "%%%") { data } }')
    assert "is not an output id" in bad_output["errors"][0]["message"]
    no_trace = await api.gql('{ runTrace(runID: "01NOPE") { name } }')
    assert "no run with id" in no_trace["errors"][0]["message"]
    # Documents that parse but hold no operation to run (found by the fuzz suite: a 500).
    for body in (
        {"query": "{ apps { name } }", "operationName": "Nope"},
        {"query": "fragment F on Query { apps { name } }"},
    ):
        nothing = await api.http.post("/v0/gql", json=body)
        assert nothing.status_code == 200, nothing.text
        assert "does not contain an operation" in nothing.json()["errors"][0]["message"]


async def test_get_requests_and_introspection(api: Api) -> None:
    answer = await api.http.get("/v0/gql", params={"query": "{ apps { name } }"})
    assert answer.status_code == 200
    assert answer.json() == {"data": {"apps": [{"name": "gql-app"}]}}
    schema = await api.data("{ __schema { queryType { fields { name } } } }")
    names = {f["name"] for f in schema["__schema"]["queryType"]["fields"]}
    assert {"run", "runTrigger", "runTrace", "runTraceSpanOutputByID", "event", "runs"} <= names


async def test_dev_info_lists_functions_and_start_options(api: Api) -> None:
    answer = await api.http.get("/dev")
    assert answer.status_code == 200
    info = answer.json()
    assert info["startOpts"] == {"port": 8288}
    assert {fn["slug"] for fn in info["functions"]} == {
        "gql-app-checkout",
        "gql-app-flaky",
        "gql-app-doomed",
        "gql-app-patient",
        "gql-app-rescued",
    }
    assert info["handlers"][0]["appName"] == "gql-app"


async def test_self_hosted_graphql_needs_the_signing_key(tmp_path: pathlib.Path) -> None:
    key = "signkey-prod-" + "ab" * 32
    engine = Engine(client, [checkout], database=tmp_path / "auth.db", durability="normal")
    app = create_app(engine, dev=False, signing_key=key)
    async with (
        engine,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http,
    ):
        body = {"query": "{ apps { name } }"}
        refused = await http.post("/v0/gql", json=body)
        assert refused.status_code == 401
        assert (await http.get("/dev")).status_code == 401
        allowed = await http.post("/v0/gql", json=body, headers={"authorization": f"Bearer {key}"})
        assert allowed.status_code == 200
        assert allowed.json()["data"]["apps"][0]["name"] == "gql-app"
