"""Scenarios both official-SDK apps run (FastAPI with async functions, Flask with sync
ones), written once: each test module imports them, and pytest runs them there against that
module's ``servers`` fixture, whose ``prefix`` names the app's events and ``app_id`` its
functions."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.support import FINISHED, OfficialServers

__all__ = [
    "test_a_failure_on_the_last_attempt_reaches_the_run_and_on_failure",
    "test_invoke",
    "test_non_retriable_error_fails_the_run_at_once",
    "test_on_failure_handler_runs_with_the_failure_event",
    "test_parallel_race",
    "test_parallel_wait",
    "test_sleep",
    "test_step_send_event_starts_another_function",
    "test_wait_for_event_match",
    "test_wait_for_event_timeout",
]


@pytest.mark.slow
def test_parallel_wait(servers: OfficialServers) -> None:
    run = servers.finished_run(servers.send(f"{servers.prefix}/parallel.wait", {}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"first": "first", "group": ["p1", "p2", "p3"], "last": "after 3"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("event", "output"),
    [
        ("parallel.race", {"group": ["fast", "slow"], "last": "last"}),
        # The sleep is re-reported by the discovery call that follows the fast branch.
        ("parallel.race.sleep", {"group": ["fast", None]}),
    ],
    ids=["two-runs", "run-and-sleep"],
)
def test_parallel_race(servers: OfficialServers, event: str, output: dict[str, Any]) -> None:
    run = servers.finished_run(servers.send(f"{servers.prefix}/{event}", {}))
    assert run["status"] == "Completed", run
    assert run["output"] == output


@pytest.mark.slow
def test_sleep(servers: OfficialServers) -> None:
    run = servers.finished_run(servers.send(f"{servers.prefix}/sleep", {}))
    assert run["status"] == "Completed", run
    assert 0.9 <= run["output"]["slept"] < 5.0, run


@pytest.mark.slow
def test_wait_for_event_match(servers: OfficialServers) -> None:
    event_id = servers.send(f"{servers.prefix}/wait", {"timeout_s": 15, "token": "t-42"})
    # The pause exists only once the SDK has answered; until the run finishes, keep sending
    # a non-matching reply followed by the matching one (bounded by the run's timeout).
    deadline = time.monotonic() + 10
    seq = 0
    while not servers.runs(event_id) or servers.runs(event_id)[0]["status"] not in FINISHED:
        assert time.monotonic() < deadline, servers.runs(event_id)
        seq += 1
        answer = httpx.post(
            f"{servers.url}/e/key",
            json=[
                {"name": f"{servers.prefix}/wait.reply", "data": {"token": "other", "seq": seq}},
                {"name": f"{servers.prefix}/wait.reply", "data": {"token": "t-42", "seq": seq}},
            ],
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        time.sleep(0.3)
    run = servers.finished_run(event_id)
    assert run["status"] == "Completed", run
    got = run["output"]["got"]
    assert got is not None, run
    assert got["name"] == f"{servers.prefix}/wait.reply"
    assert got["data"]["token"] == "t-42"
    assert 1 <= got["data"]["seq"] <= seq


@pytest.mark.slow
def test_wait_for_event_timeout(servers: OfficialServers) -> None:
    started = time.monotonic()
    run = servers.finished_run(
        servers.send(f"{servers.prefix}/wait", {"timeout_s": 1, "token": "t-0"})
    )
    assert run["status"] == "Completed", run
    assert run["output"] == {"got": None}
    assert time.monotonic() - started >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(
    ("x", "output"),
    [
        (3, {"result": {"doubled": 6}}),
        (-1, {"caught": "NonRetriableError", "message": "negative x: -1"}),
    ],
    ids=["success", "failure-caught"],
)
def test_invoke(servers: OfficialServers, x: int, output: dict[str, Any]) -> None:
    run = servers.finished_run(servers.send_official(f"{servers.prefix}/invoke", {"x": x}))
    assert run["status"] == "Completed", run
    assert run["output"] == output


@pytest.mark.slow
def test_non_retriable_error_fails_the_run_at_once(servers: OfficialServers) -> None:
    # retries=3, but a retry would only come after the backoff: the run must fail first.
    run = servers.finished_run(servers.send(f"{servers.prefix}/non-retriable", {}), timeout=8)
    assert run["status"] == "Failed", run
    assert run["output"] is None
    assert run["error"]["name"] == "NonRetriableError"
    assert run["error"]["message"] == "give up at attempt 0"


def _failure_handler_run(servers: OfficialServers, run_id: str) -> dict[str, Any]:
    """The finished run of the on-failure handler started by ``run_id``'s failure event."""
    deadline = time.monotonic() + 10
    failed: list[dict[str, Any]] = []
    while not failed:
        assert time.monotonic() < deadline, "no inngest/function.failed event for the run"
        events = httpx.get(
            f"{servers.url}/v1/events", params={"name": "inngest/function.failed"}, timeout=5
        ).json()["data"]
        failed = [e for e in events if e["data"].get("run_id") == run_id]
        time.sleep(0.1)
    [event] = failed
    return servers.finished_run(event["internal_id"])


@pytest.mark.slow
def test_on_failure_handler_runs_with_the_failure_event(servers: OfficialServers) -> None:
    run = servers.finished_run(servers.send(f"{servers.prefix}/failing", {"who": "bob"}))
    assert run["status"] == "Failed", run
    assert run["error"]["name"] == "ValueError"
    assert run["error"]["message"] == "failed for bob"
    handler = _failure_handler_run(servers, run["run_id"])
    assert handler["function_id"] == f"{servers.app_id}-failing-failure"
    assert handler["status"] == "Completed", handler
    assert handler["output"] == {
        "event": "inngest/function.failed",
        "function_id": f"{servers.app_id}-failing",
        "run_id": run["run_id"],
        "error": "failed for bob",
        "original": {"who": "bob"},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("function", "message", "code"),
    [
        # retries=1: attempt 0 fails and is retried (after the 0.2 s test backoff), then
        # attempt 1, the last, fails the run with its own error.
        ("fail-last", "broke at attempt 1", "unknown"),
        # The step fails for good (StepFailed) and the function re-raises the StepError.
        ("step-fail-last", "step broke", "step_errored"),
    ],
    ids=["function-body", "step-re-raised"],
)
def test_a_failure_on_the_last_attempt_reaches_the_run_and_on_failure(
    servers: OfficialServers, function: str, message: str, code: str
) -> None:
    """The SDK's error body (``{code, message, name, stack}``) is the run's error and the
    ``data.error`` the on-failure handler reads, stack and all (protocol §3.4, §8.4)."""
    run = servers.finished_run(servers.send(f"{servers.prefix}/{function}", {}), timeout=15)
    assert run["status"] == "Failed", run
    error = run["error"]
    assert (error["name"], error["message"], error["code"]) == ("ValueError", message, code)
    assert error["stack"].startswith("Traceback (most recent call last):"), error
    assert error["stack"].rstrip().endswith(f"ValueError: {message}"), error
    handler = _failure_handler_run(servers, run["run_id"])
    assert handler["function_id"] == f"{servers.app_id}-{function}-failure"
    assert handler["status"] == "Completed", handler
    assert handler["output"] == {
        "function_id": f"{servers.app_id}-{function}",
        "run_id": run["run_id"],
        "error": {"error": message, **error},
    }


@pytest.mark.slow
def test_step_send_event_starts_another_function(servers: OfficialServers) -> None:
    run = servers.finished_run(servers.send_official(f"{servers.prefix}/send", {"v": 9}))
    assert run["status"] == "Completed", run
    [sent] = run["output"]
    receiver = servers.finished_run(sent)
    assert receiver["function_id"] == f"{servers.app_id}-receiver"
    assert receiver["status"] == "Completed", receiver
    assert receiver["output"] == {"received": {"from": run["run_id"], "v": 9}}
