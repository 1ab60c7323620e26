"""Flow control with the official ``inngest`` Python SDK (0.5.19) as a real client of
``mainspring dev`` (protocol §10).

One ``mainspring dev`` server and one FastAPI app (``tests/e2e/official_flow_app.py``) are
shared by the module. The app registers its functions' flow control options over
``POST /fn/register`` (the official SDK's wire shape, protocol §1.3); each test sends events
over plain HTTP and checks, from the runs' statuses, errors and outputs (wall-clock times the
steps return), that the control held: not just that the runs finished.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from tests.e2e.support import OfficialServers, official_servers

pytestmark = pytest.mark.slow

#: Statuses after which a run changes no more (``Skipped``: turned away by flow control).
SETTLED = frozenset({"Completed", "Failed", "Cancelled", "Skipped"})

# The app's settings, repeated from tests/e2e/official_flow_app.py: importing the app here
# imports inngest.fast_api, whose pydantic deprecation warnings this suite turns into errors.
STEP_S = 0.4
THROTTLE_PERIOD_S = 3
DEBOUNCE_PERIOD_S = 2
BATCH_TIMEOUT_S = 2

#: Slack for timing checks across two processes and the server's queue.
SLACK_S = 0.3

Span = tuple[float, float]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficialServers]:
    def app(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.e2e.official_flow_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]

    workdir = tmp_path_factory.mktemp("official-flow")
    with official_servers(app, workdir, prefix="flow", app_id="official-flow-app") as servers:
        yield servers


# --- helpers ---------------------------------------------------------------------------------


def send_all(servers: OfficialServers, name: str, datas: Sequence[dict[str, Any]]) -> list[str]:
    """Send one event per ``datas`` entry, in order; their internal ids."""
    return [servers.send(name, data) for data in datas]


def get_run(servers: OfficialServers, run_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{servers.url}/v1/runs/{run_id}", timeout=5)
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()["data"]
    return run


def settled_runs(
    servers: OfficialServers, event_ids: Sequence[str], timeout: float = 15.0
) -> list[list[dict[str, Any]]]:
    """Each event's runs, once every event has at least one and all of them have settled."""
    deadline = time.monotonic() + timeout
    found: list[list[dict[str, Any]]] = []
    while time.monotonic() < deadline:
        found = [servers.runs(event_id) for event_id in event_ids]
        if all(runs and all(r["status"] in SETTLED for r in runs) for runs in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"the runs did not settle in {timeout}s: {found}")


def one_run_each(
    servers: OfficialServers, event_ids: Sequence[str], timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The one run of each event, once settled (read back from ``GET /v1/runs/{id}``)."""
    runs = []
    for event_id, of_event in zip(
        event_ids, settled_runs(servers, event_ids, timeout), strict=True
    ):
        assert len(of_event) == 1, (event_id, of_event)
        detail = get_run(servers, of_event[0]["run_id"])
        assert detail == of_event[0]
        runs.append(detail)
    return runs


def run_ids(servers: OfficialServers, event_ids: Sequence[str]) -> list[str]:
    """The id of each event's one run, as soon as the server has created it."""
    deadline = time.monotonic() + 5
    while True:
        found = [servers.runs(event_id) for event_id in event_ids]
        if all(found):
            assert all(len(runs) == 1 for runs in found), found
            return [runs[0]["run_id"] for runs in found]
        assert time.monotonic() < deadline, f"no runs created: {found}"
        time.sleep(0.02)


def assert_skipped(run: dict[str, Any], name: str) -> None:
    assert run["status"] == "Skipped", run
    assert run["output"] is None, run
    error = run["error"]
    assert isinstance(error, dict), run
    assert error["name"] == name, run
    assert isinstance(error["message"], str), run
    assert error["message"], run
    assert run["run_started_at"] is None, run


def spans_of(output: dict[str, Any]) -> list[Span]:
    return [(float(start), float(end)) for start, end in output["spans"]]


def assert_disjoint(spans: Sequence[Span]) -> None:
    """No two spans overlap (one may start the instant another ends)."""
    ordered = sorted(spans)
    for earlier, later in itertools.pairwise(ordered):
        assert earlier[1] <= later[0], f"steps overlap: {earlier} and {later} in {ordered}"


def overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# --- 1. concurrency --------------------------------------------------------------------------


def test_concurrency_limit_one_never_overlaps_steps(servers: OfficialServers) -> None:
    events = send_all(servers, "flow/concurrency", [{"n": n} for n in range(5)])
    runs = one_run_each(servers, events, timeout=20)
    assert [r["status"] for r in runs] == ["Completed"] * 5, runs
    assert [r["output"]["n"] for r in runs] == list(range(5))
    spans = [span for run in runs for span in spans_of(run["output"])]
    assert len(spans) == 10
    assert_disjoint(spans)
    # 10 steps of STEP_S, one at a time: the reported "all started within 20 ms" is gone.
    assert max(s[1] for s in spans) - min(s[0] for s in spans) >= 10 * STEP_S


# --- 2. keyed concurrency --------------------------------------------------------------------


def test_keyed_concurrency_limits_each_key_alone(servers: OfficialServers) -> None:
    keys = ["A", "A", "A", "B"]
    events = send_all(servers, "flow/keyed", [{"key": key} for key in keys])
    runs = one_run_each(servers, events, timeout=20)
    assert [r["status"] for r in runs] == ["Completed"] * 4, runs
    assert [r["output"]["key"] for r in runs] == keys
    a_spans = [span for run in runs[:3] for span in spans_of(run["output"])]
    b_spans = spans_of(runs[3]["output"])
    # At most one step of key A at a time...
    assert_disjoint(a_spans)
    assert_disjoint(b_spans)
    # ...while key B, sent last, does not queue behind A: its steps run alongside A's.
    assert any(overlaps(b, a) for b in b_spans for a in a_spans), (a_spans, b_spans)
    assert max(b[1] for b in b_spans) < max(a[1] for a in a_spans), (a_spans, b_spans)


# --- 3. throttle -----------------------------------------------------------------------------


def test_throttle_delays_starts_and_drops_none(servers: OfficialServers) -> None:
    events = send_all(servers, "flow/throttle", [{"n": n} for n in range(3)])
    runs = one_run_each(servers, events, timeout=3 * THROTTLE_PERIOD_S + 10)
    assert [r["status"] for r in runs] == ["Completed"] * 3, runs  # delayed, never dropped
    assert [r["output"]["n"] for r in runs] == [0, 1, 2]
    starts = [float(r["output"]["started"]) for r in runs]
    # One start per period, in the order sent.
    for earlier, later in itertools.pairwise(starts):
        gap = later - earlier
        assert THROTTLE_PERIOD_S - SLACK_S <= gap <= THROTTLE_PERIOD_S + 1.5, starts


# --- 4. rate limit ---------------------------------------------------------------------------


def test_rate_limit_skips_runs_over_the_limit(servers: OfficialServers) -> None:
    events = send_all(servers, "flow/rate-limit", [{"n": n} for n in range(3)])
    first, *rest = one_run_each(servers, events)
    assert first["status"] == "Completed", first
    assert first["output"] == {"n": 0}
    assert first["error"] is None
    for run in rest:
        assert_skipped(run, "RateLimited")
        assert "rate limit" in run["error"]["message"].lower(), run


# --- 5. debounce -----------------------------------------------------------------------------


def test_debounce_runs_once_with_the_last_event(servers: OfficialServers) -> None:
    events: list[str] = []
    for n in range(4):
        if n:
            time.sleep(0.2)
        events.append(servers.send("flow/debounce", {"n": n}))
    last_sent = time.time()
    runs = one_run_each(servers, events, timeout=DEBOUNCE_PERIOD_S + 10)
    *replaced, kept = runs
    for run in replaced:
        assert_skipped(run, "Debounced")
    assert kept["status"] == "Completed", kept
    assert kept["output"]["n"] == 3, kept  # the latest event
    assert kept["output"]["events"] == 1, kept
    # It started only once no new event had come for the period.
    assert float(kept["output"]["started"]) >= last_sent + DEBOUNCE_PERIOD_S - SLACK_S, kept


# --- 6. batching -----------------------------------------------------------------------------


def test_batch_events_by_size_then_timeout(servers: OfficialServers) -> None:
    events: list[str] = []
    sent_at: list[float] = []
    for n in range(7):
        events.append(servers.send("flow/batch", {"n": n}))
        sent_at.append(time.time())
    found = settled_runs(servers, events, timeout=BATCH_TIMEOUT_S + 10)
    # A batch run is listed under every event it took.
    assert all(len(runs) == 1 for runs in found), found
    ids = [runs[0]["run_id"] for runs in found]
    assert ids[0] == ids[1] == ids[2], ids
    assert ids[3] == ids[4] == ids[5], ids
    assert len({ids[0], ids[3], ids[6]}) == 3, ids
    first, second, last = (get_run(servers, ids[i]) for i in (0, 3, 6))
    assert [r["status"] for r in (first, second, last)] == ["Completed"] * 3
    # Each run got its events, in the order they were sent; ctx.event is the first.
    assert first["output"]["events"] == [0, 1, 2], first
    assert second["output"]["events"] == [3, 4, 5], second
    assert last["output"]["events"] == [6], last
    assert [r["output"]["event"] for r in (first, second, last)] == [0, 3, 6]
    # Full batches start at once; the last one, never full, when its timeout ends.
    assert float(first["output"]["started"]) < sent_at[2] + BATCH_TIMEOUT_S - SLACK_S, first
    assert float(second["output"]["started"]) < sent_at[5] + BATCH_TIMEOUT_S - SLACK_S, second
    assert float(last["output"]["started"]) >= sent_at[6] + BATCH_TIMEOUT_S - SLACK_S, last


# --- 7. idempotency --------------------------------------------------------------------------


def test_idempotency_key_runs_once_per_key(servers: OfficialServers) -> None:
    events = send_all(
        servers,
        "flow/idempotency",
        [{"order_id": "o-1", "n": 0}, {"order_id": "o-1", "n": 1}, {"order_id": "o-2", "n": 2}],
    )
    first, again, other = one_run_each(servers, events)
    assert first["status"] == "Completed", first
    assert first["output"] == {"order_id": "o-1", "n": 0}
    assert_skipped(again, "IdempotencyKeyUsed")
    assert other["status"] == "Completed", other
    assert other["output"] == {"order_id": "o-2", "n": 2}


# --- 8. singleton ----------------------------------------------------------------------------


def wait_running(servers: OfficialServers, event_id: str) -> dict[str, Any]:
    """The event's run once it has started."""
    deadline = time.monotonic() + 10
    while True:
        runs = servers.runs(event_id)
        if runs and runs[0]["status"] == "Running":
            return runs[0]
        assert time.monotonic() < deadline, f"never running: {runs}"
        time.sleep(0.05)


def test_singleton_skip_turns_away_a_run_while_one_is_going(servers: OfficialServers) -> None:
    going = servers.send("flow/singleton.skip", {"key": "K", "n": 0, "seconds": 1.5})
    wait_running(servers, going)
    sent_at = time.time()
    skipped = servers.send("flow/singleton.skip", {"key": "K", "n": 1, "seconds": 0.1})
    other_key = servers.send("flow/singleton.skip", {"key": "L", "n": 2, "seconds": 0.1})
    first, second, other = one_run_each(servers, [going, skipped, other_key])
    assert first["status"] == "Completed", first
    assert first["output"]["n"] == 0
    # K's second event came while K's first run was going.
    assert float(first["output"]["begun"]) < sent_at < float(first["output"]["span"][1]), first
    assert_skipped(second, "SingletonRunning")
    assert other["status"] == "Completed", other  # another key is not held
    # Once K's run has finished, K may run again.
    later = one_run_each(
        servers, [servers.send("flow/singleton.skip", {"key": "K", "n": 3, "seconds": 0.1})]
    )
    assert later[0]["status"] == "Completed", later
    assert later[0]["output"]["n"] == 3


def test_singleton_cancel_replaces_the_running_run(servers: OfficialServers) -> None:
    first_sent = time.time()
    going = servers.send("flow/singleton.cancel", {"key": "K", "n": 0, "seconds": 1.5})
    wait_running(servers, going)
    replacing = servers.send("flow/singleton.cancel", {"key": "K", "n": 1, "seconds": 0.1})
    first, second = one_run_each(servers, [going, replacing])
    assert first["status"] == "Cancelled", first
    assert first["output"] is None, first
    assert second["status"] == "Completed", second
    assert second["output"]["n"] == 1
    # The new run did not wait for the old one to end: it began before the old one's
    # 1.5 s step could have finished.
    assert float(second["output"]["begun"]) < first_sent + 1.5, (first_sent, second)


# --- 9. priority ---------------------------------------------------------------------------


def test_priority_runs_a_boosted_run_before_earlier_ones(servers: OfficialServers) -> None:
    blocker = servers.send("flow/priority", {"name": "blocker", "boost": 0, "seconds": 1.0})
    wait_running(servers, blocker)
    time.sleep(0.2)  # its second step is in flight now: it holds the one slot
    names = ["low-0", "low-1", "low-2", "high"]
    sent_from = time.time()
    events = send_all(
        servers,
        "flow/priority",
        [{"name": name, "boost": 60 if name == "high" else 0, "seconds": 0.2} for name in names],
    )
    sent_until = time.time()
    runs = one_run_each(servers, [blocker, *events], timeout=20)
    assert [r["status"] for r in runs] == ["Completed"] * 5, runs
    assert [r["output"]["name"] for r in runs] == ["blocker", *names]
    blocked = runs[0]["output"]["span"]
    # All four came while the blocker's step held the slot...
    assert float(blocked[0]) < sent_from, (blocked, sent_from)
    assert sent_until < float(blocked[1]), (blocked, sent_until)
    # ...which the limit of 1 kept: no call began inside another run's step.
    spans = {
        r["output"]["name"]: (float(r["output"]["span"][0]), float(r["output"]["span"][1]))
        for r in runs
    }
    assert_disjoint(list(spans.values()))
    begun = {r["output"]["name"]: float(r["output"]["begun"]) for r in runs}
    for name, at in begun.items():
        for other, (start, end) in spans.items():
            assert other == name or not start < at < end, (name, at, other, spans)
    # Sent last, the boosted run went first once the blocker's step freed the slot...
    assert all(begun["high"] < begun[name] for name in names[:3]), begun
    # ...and the others kept the order they were sent in.
    assert begun["low-0"] < begun["low-1"] < begun["low-2"], begun


# --- 10. a held-back run shows Queued --------------------------------------------------------


def test_a_run_held_by_concurrency_shows_queued(servers: OfficialServers) -> None:
    events = send_all(servers, "flow/concurrency", [{"n": n} for n in range(5)])
    ids = run_ids(servers, events)
    # (wall time, status of each run) for every poll until all have finished.
    seen: list[tuple[float, list[dict[str, Any]]]] = []
    #: The last run's status on GET /v1/events/{id}/runs, poll by poll.
    on_event: list[str] = []
    deadline = time.monotonic() + 20
    while True:
        at = time.time()
        sweep = [get_run(servers, run_id) for run_id in ids]
        seen.append((at, sweep))
        on_event.append(servers.runs(events[-1])[0]["status"])
        if all(r["status"] in SETTLED for r in sweep):
            break
        assert time.monotonic() < deadline, sweep
        time.sleep(0.05)
    final = seen[-1][1]
    assert [r["status"] for r in final] == ["Completed"] * 5, final
    last = final[-1]
    first_step = float(last["output"]["spans"][0][0])
    # The last run was seen Queued (not started) while another run was running...
    held = [
        (at, sweep)
        for at, sweep in seen
        if sweep[-1]["status"] == "Queued" and any(r["status"] == "Running" for r in sweep[:-1])
    ]
    assert held, [[r["status"] for r in sweep] for _, sweep in seen]
    at, sweep = held[-1]
    assert sweep[-1]["run_started_at"] is None, sweep[-1]
    assert sweep[-1]["output"] is None, sweep[-1]
    assert sweep[-1]["error"] is None, sweep[-1]
    # ...and it was held back indeed: its first step ran only after that.
    assert at < first_step, (at, first_step)
    # The event's runs said the same.
    assert "Queued" in on_event, on_event


# --- 11. a run whose first call is in flight has started -------------------------------------


def test_a_run_whose_first_step_is_in_flight_shows_running(servers: OfficialServers) -> None:
    """``Queued`` must mean "not started": a run whose first call is executing its step is
    Running (as it reports afterwards: its ``run_started_at`` is the call's start)."""
    event = servers.send("flow/slow-first", {"seconds": 1.5})
    [run_id] = run_ids(servers, [event])
    time.sleep(0.6)
    observed_at = time.time()
    on_event = servers.runs(event)[0]
    detail = get_run(servers, run_id)
    [done] = one_run_each(servers, [event])
    assert done["status"] == "Completed", done
    span = done["output"]["span"]
    assert float(span[0]) < observed_at < float(span[1]), (span, observed_at)  # in flight
    assert done["run_started_at"] <= observed_at * 1000, done
    assert (detail["status"], on_event["status"]) == ("Running", "Running"), (detail, on_event)
    assert detail["run_started_at"] is not None, detail
