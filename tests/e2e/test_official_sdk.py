"""Compatibility: the official ``inngest`` Python SDK (0.5.19) as a real client of
``mainspring dev``.

One ``mainspring dev`` server and one FastAPI app (``tests/e2e/official_app.py``, served by
``inngest.fast_api.serve`` on uvicorn) are shared by the whole module. The server pings the
app, the app syncs back to ``POST /fn/register``, and every test sends events (over plain
HTTP or with the official client's ``send_sync``, which adds ``x-inngest-event-id-seed``)
and polls the REST API for the runs' final status and output.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import inngest
import pytest

# Scenarios both official-SDK apps run, written once; collected here, with this module's
# `servers` fixture.
from tests.e2e.official_scenarios import *  # noqa: F403
from tests.e2e.support import OfficialServers, official_servers

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: The scenario whose step is retried (the server runs with --retry-backoff 0.2): it is
#: started as soon as the app has synced, so its wait overlaps the others.
STEP_ERROR_TIMEOUT_S = 60.0


@dataclasses.dataclass
class Servers(OfficialServers):
    step_error_event: str
    step_error_sent_at: float


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    def app(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.e2e.official_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]

    workdir = tmp_path_factory.mktemp("official")
    with official_servers(app, workdir, prefix="official", app_id="official-app") as base:
        servers = Servers(base.url, base.sender, base.prefix, base.app_id, "", 0.0)
        servers.step_error_sent_at = time.monotonic()
        servers.step_error_event = servers.send("official/step-error", {})
        yield servers


# --- step.run ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("event", ["official/steps", "official/steps.sync"])
def test_step_run_sequence(servers: Servers, event: str) -> None:
    run = servers.finished_run(servers.send_official(event, {"n": 4}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 5, "b": 10, "c": "10!", "attempt": 0}
    assert run["error"] is None


@pytest.mark.slow
def test_send_sync_ids_are_the_internal_event_ids(servers: Servers) -> None:
    [first, second] = servers.sender.send_sync(
        [
            inngest.Event(name="official/steps", data={"n": 1}),
            inngest.Event(name="official/steps", data={"n": 2}),
        ]
    )
    assert first != second
    outputs = [servers.finished_run(event_id)["output"]["a"] for event_id in (first, second)]
    assert outputs == [2, 3]


@pytest.mark.slow
def test_a_resent_send_starts_nothing_twice(servers: Servers) -> None:
    # The official client builds one request (one x-inngest-event-id-seed) and sends it again
    # on a retry: the server must derive the same ids and start each function once.
    request = servers.sender._build_send_request(
        [
            inngest.Event(name="official/steps", data={"n": 10}),
            inngest.Event(name="official/steps", data={"n": 20}),
        ]
    )
    assert not isinstance(request, Exception)
    assert request.headers.get("x-inngest-event-id-seed")
    http = servers.sender._http_client._http_client_sync
    first, again = http.send(request).json(), http.send(request).json()
    assert first == again, (first, again)
    outputs = [servers.finished_run(event_id)["output"]["a"] for event_id in first["ids"]]
    assert outputs == [11, 21]


@pytest.mark.slow
def test_call_requests_carry_the_request_and_job_ids(servers: Servers) -> None:
    # The Go executor sends x-request-id and x-inngest-job-id (protocol §2.2); the official SDK
    # exposes them to user code as ctx.request_id and ctx.job_id.
    run = servers.finished_run(servers.send("official/ids", {}))
    assert run["status"] == "Completed", run
    output = run["output"]
    assert output["run_id"] == run["run_id"]
    assert isinstance(output["request_id"], str), output
    assert output["request_id"]
    assert isinstance(output["job_id"], str), output
    assert output["job_id"]


@pytest.mark.slow
def test_retry_after_error_sets_the_retry_time(servers: Servers) -> None:
    # RetryAfterError(1 s) replaces the 15 s+ backoff of the first retry.
    run = servers.finished_run(servers.send("official/retry-after", {}), timeout=10)
    assert run["status"] == "Completed", run
    assert run["output"]["attempt"] == 1
    assert 0.9 <= run["output"]["waited"] < 10


# --- step error after retries (last: its retry waits for the server's real backoff) ------


@pytest.mark.slow
def test_step_error_caught_after_retries(servers: Servers) -> None:
    remaining = STEP_ERROR_TIMEOUT_S - (time.monotonic() - servers.step_error_sent_at)
    run = servers.finished_run(servers.step_error_event, timeout=max(remaining, 1.0))
    assert run["status"] == "Completed", run
    # retries=1: attempt 0 reported StepError, attempt 1 (the last) StepFailed.
    assert run["output"]["caught"] == "ValueError"
    assert run["output"]["message"] == "boom at attempt 1"


@pytest.mark.slow
def test_ten_megabyte_steps_use_the_api_and_read_back_over_rest_and_graphql(
    servers: Servers,
) -> None:
    """10 steps of 1 MB: past 4 MB the calls carry no state (``use_api``) and the official
    SDK fetches it from ``/v0/runs/{id}/batch`` and ``/actions``; the run's results are then
    read back through REST and GraphQL."""
    run = servers.finished_run(servers.send("official/big", {}), timeout=60)
    assert run["status"] == "Completed", run
    assert run["output"] == {"steps": 10, "bytes": 10 * 1_048_576, "intact": True}

    def gql(query: str, **variables: Any) -> dict[str, Any]:
        answer = httpx.post(
            f"{servers.url}/v0/gql", json={"query": query, "variables": variables}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    found = gql(
        "query($id: String!) { run(runID: $id) { status output "
        "trace { childrenSpans { name status outputID } } } }",
        id=run["run_id"],
    )["run"]
    assert found["status"] == "COMPLETED"
    assert json.loads(found["output"]) == run["output"]
    spans = found["trace"]["childrenSpans"]
    assert [s["name"] for s in spans] == [f"mb-{i}" for i in range(10)]
    for index in (0, 9):
        output = gql(
            "query($o: String!) { runTraceSpanOutputByID(outputID: $o) { data } }",
            o=spans[index]["outputID"],
        )["runTraceSpanOutputByID"]
        assert json.loads(output["data"]) == (f"{index:x}" * 1_048_576)[:1_048_576]


@pytest.mark.slow
def test_a_parallel_group_keeps_the_protocols_request_shape(servers: Servers) -> None:
    """Our engine offers to run a plan in one call (``x-mainspring-parallel-plans``); the
    official SDK ignores the offer and gets protocol §7's calls: "first" runs at once,
    the plan, a call per planned step, then "last" and the return."""
    run = servers.finished_run(servers.send("official/parallel.wait", {}))
    assert run["status"] == "Completed", run
    [app] = [
        a
        for a in httpx.get(f"{servers.url}/v1/apps", timeout=5).json()["data"]
        if a["name"] == servers.app_id
    ]
    origin = str(app["url"]).removesuffix("/api/inngest")
    calls = httpx.get(f"{origin}/calls/{run['run_id']}", timeout=5).json()
    assert calls == {"discovery": 4, "targeted": 3}
