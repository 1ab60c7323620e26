"""SIGKILL the engine while a batch fills, while debounces are pending and while runs queue
behind concurrency limits; restart it and check that no event is lost, no batch or debounced
run starts twice and the limits still hold.

The app (``flow_sigkill_app.py``) runs four functions: ``batch`` (``Batch(max_size=5,
timeout=5s)``, one 800 ms step), ``debounce`` (sync, ``Debounce(period=4s,
key="event.data.k")``, one step), ``limited`` (``Concurrency(limit=2, key="event.data.g")``,
two 250 ms steps; eight runs in each of the groups ``p`` and ``q``) and ``whole``
(``RunConcurrency(limit=1)``: a step, a 2 s durable sleep, a step; three runs). Step handlers
log ``start``/``end`` lines with a per-execution nonce to a side-effect file. Only one engine
may open the database, so the test sends events through the app: it drops JSON files in an
outbox directory that the running app polls (see the app's docstring).

Kill points, each in a fresh incarnation of the process, decided from the database (read
only, beside the engine) and the side-effect file:

1. ``filling``: the batch holds 3 of its 5 events (``b0``-``b2``), due at least
   :data:`MARGIN_MS` later; the debounces of ``x`` (``x0``, then ``x1`` and ``x2`` in a
   second send) and ``y`` (``y0``) are pending, due at least as late; one ``whole`` run sleeps
   (at least :data:`NAP_MARGIN_MS` to go) holding the run-level slot, the two others wait for
   it; ``limited`` has a step in flight in each group and at least two runs per group not
   started. Restarted at once.
2. ``filled``: once the restarted engine runs ``limited`` steps again, ``x3``, ``b3`` and
   ``b4`` are sent; the app acknowledges and blocks its loop; the test kills it at once: the
   batch is full (its start job due, its hold closed) and ``x2`` replaced, but nothing has
   run. Restarted at once, with ``b5`` and ``b6`` already in the outbox.
3. ``batch-running``: the first batch's handler is in flight (at least :data:`STEP_MARGIN`
   still to sleep) and ``b5``, ``b6`` have opened a second batch. The test then waits until
   the debounce of ``x3`` is overdue before the last restart.

Each kill is checked against the database read just after it. The last incarnation runs
everything to completion; then:

* events: every event sent is stored exactly once; every batch event is in exactly one batch
  run, in the order sent (``b0``-``b4``, then ``b5``, ``b6``), and those two batch runs
  completed, each once, with all their events, the second no earlier than its timeout;
* debounce: exactly one run per key completed (``x3``, ``y0``: the last events), no earlier
  than the period after its event; the replaced runs (``x0``-``x2``) are ``Skipped`` as
  replaced and never ran a handler;
* limits: every ``limited`` and ``whole`` run completed with the expected output; within
  each incarnation (a handler killed in flight dies with its process) no more than
  :data:`~flow_sigkill_app.LIMIT` ``limited`` handlers of a group overlapped, in the order of
  the side-effect file; no ``whole`` handler ran while another run held the run-level slot
  (from its recorded ``a`` to its recorded ``b``), across restarts;
* no job, hold, pause or pending member is left; no handler ran after its step was recorded,
  the memo recorded is that of an execution whose ``start`` and ``end`` are logged, memos
  recorded at a kill never change; no engine error was logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e import flow_sigkill_app as app
from tests.e2e.sigkill_support import (
    POLL,
    Effects,
    Incarnation,
    KillPoint,
    Line,
    Recorded,
    StepKey,
    check_executions,
    in_flight,
    now_ms,
)

pytestmark = pytest.mark.slow

APP_SCRIPT = pathlib.Path(__file__).with_name("flow_sigkill_app.py")
READY_TIMEOUT = 15.0
TRIGGER_TIMEOUT = 10.0
FINAL_TIMEOUT = 40.0
#: A timer (a batch's timeout, a debounce, a sleep) counts as pending at a kill only with
#: this long (ms) to go when the kill is decided, so it is still pending when the signal lands.
MARGIN_MS = 1000
#: The same for the sleep of a ``whole`` run (it only has to outlive the signal).
NAP_MARGIN_MS = 300
#: A handler counts as in flight only with this long (s) still to sleep.
STEP_MARGIN = 0.1
#: The app blocks this long after recording the events that fill the batch; the test kills
#: it well before.
HOLD_MS = 10_000
#: How long past due the debounce of ``x3`` is when the last incarnation starts.
OVERDUE_MS = 200

GROUPS = ("p", "q")
RUNS_PER_GROUP = 8
WHOLE_RUNS = 3


def _event(name: str, tag: str, **data: str) -> dict[str, Any]:
    return {"name": name, "data": {"tag": tag, **data}, "id": tag}


def _batch(*tags: str) -> list[dict[str, Any]]:
    return [_event(app.BATCH_EVENT, tag) for tag in tags]


def _debounce(k: str, *tags: str) -> list[dict[str, Any]]:
    return [_event(app.DEBOUNCE_EVENT, tag, k=k) for tag in tags]


LIMITED_TAGS = [f"{g}{i}" for i in range(RUNS_PER_GROUP) for g in GROUPS]
WHOLE_TAGS = [f"w{i}" for i in range(WHOLE_RUNS)]
FIRST = [
    *(_event(app.WHOLE_EVENT, tag) for tag in WHOLE_TAGS),
    *(_event(app.LIMITED_EVENT, tag, g=tag[0]) for tag in LIMITED_TAGS),
    *_batch("b0", "b1", "b2"),
    *_debounce("x", "x0"),
    *_debounce("y", "y0"),
]
SECOND = _debounce("x", "x1", "x2")
FILL = [*_debounce("x", "x3"), *_batch("b3", "b4")]
OPEN = _batch("b5", "b6")
SENDS = {"1-first": FIRST, "2-second": SECOND, "3-fill": FILL, "4-open": OPEN}

BATCHES = [["b0", "b1", "b2", "b3", "b4"], ["b5", "b6"]]
DEBOUNCE_KEYS = {"x": ["x0", "x1", "x2", "x3"], "y": ["y0"]}
#: The run key of every run the events start, once everything has run.
FINAL_RUNS = {
    *(app.batch_key(tags) for tags in BATCHES),
    *(f"debounce:{tag}" for tags in DEBOUNCE_KEYS.values() for tag in tags),
    *(f"limited:{tag}" for tag in LIMITED_TAGS),
    *(f"whole:{tag}" for tag in WHOLE_TAGS),
}


# -- the database ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunRow:
    run_id: str
    function: str
    status: str
    events: list[dict[str, Any]]
    output: Any
    error: Any
    started_at: int | None

    @property
    def tags(self) -> list[str]:
        return [str(e["data"]["tag"]) for e in self.events]


@dataclasses.dataclass(frozen=True)
class JobRow:
    run_key: str
    kind: str
    user_id: str | None
    run_at: int


@dataclasses.dataclass(frozen=True)
class HoldRow:
    kind: str
    key: str
    run_key: str
    since: int
    size: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the database holds, read at ``taken_ms`` (epoch ms, the engine's clock)."""

    taken_ms: int
    runs: dict[str, RunRow]  # by run key (a batch's changes as it fills)
    steps: dict[StepKey, Recorded]
    jobs: list[JobRow]
    holds: list[HoldRow]
    #: Batch events: event id -> run key of the batch it joined.
    run_events: dict[str, str]
    #: Every stored event: id -> (name, received_at).
    events: dict[str, tuple[str, int]]

    def run(self, run_key: str) -> RunRow:
        assert run_key in self.runs, f"no run {run_key}: {sorted(self.runs)}"
        return self.runs[run_key]

    def job(self, run_key: str, kind: str, user_id: str | None = None) -> JobRow | None:
        found = [j for j in self.jobs if (j.run_key, j.kind, j.user_id) == (run_key, kind, user_id)]
        assert len(found) <= 1, found
        return found[0] if found else None

    def start_due(self, run_key: str) -> int | None:
        job = self.job(run_key, "start")
        return None if job is None else job.run_at

    def holds_of(self, kind: str) -> list[HoldRow]:
        return [h for h in self.holds if h.kind == kind]

    def hold(self, kind: str, run_key: str) -> HoldRow | None:
        found = [h for h in self.holds if (h.kind, h.run_key) == (kind, run_key)]
        assert len(found) <= 1, found
        return found[0] if found else None


def _run_key(function: str, events: list[dict[str, Any]]) -> str:
    if function == "batch":
        return app.batch_key([str(e["data"]["tag"]) for e in events])
    return f"{function}:{events[0]['data']['tag']}"


def _json(blob: Any) -> Any:
    return None if blob is None else json.loads(blob)


def read_snapshot(db: pathlib.Path) -> Snapshot:
    """The database, read-only (WAL: safe beside a running engine), in one read transaction."""
    taken = now_ms()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        conn.execute("BEGIN")
        run_rows = conn.execute(
            "SELECT run_id, function_id, events, status, output, error, started_at FROM runs"
        ).fetchall()
        step_rows = conn.execute(
            "SELECT run_id, user_id, op, memo, started_at, ended_at FROM steps"
        ).fetchall()
        job_rows = conn.execute("SELECT run_id, kind, run_at, data FROM jobs").fetchall()
        hold_rows = conn.execute("SELECT kind, key, run_id, since, size FROM flow_holds").fetchall()
        run_event_rows = conn.execute("SELECT event_id, run_id FROM run_events").fetchall()
        event_rows = conn.execute(
            "SELECT internal_id, id, name, received_at FROM events"
        ).fetchall()
        conn.execute("COMMIT")
    prefix = app.APP_ID + "-"
    runs: dict[str, RunRow] = {}
    key_of: dict[str, str] = {}
    for run_id, function_id, events_json, status, output, error, started_at in run_rows:
        assert str(function_id).startswith(prefix), function_id
        function = str(function_id)[len(prefix) :]
        events = json.loads(events_json)
        key = _run_key(function, events)
        assert key not in runs, f"run {key} duplicated"
        row = RunRow(
            str(run_id), function, str(status), events, _json(output), _json(error), started_at
        )
        runs[key] = row
        key_of[str(run_id)] = key
    steps: dict[StepKey, Recorded] = {}
    for run_id, user_id, op, memo, started_at, ended_at in step_rows:
        skey = (key_of[str(run_id)], str(user_id))
        assert skey not in steps, f"step {skey} recorded twice"
        parsed = _json(memo)
        nonce = str(parsed["data"]["nonce"]) if op == "StepRun" else None
        steps[skey] = Recorded(str(op), parsed, nonce, started_at, int(ended_at))
    jobs: list[JobRow] = []
    for run_id, kind, run_at, data in job_rows:
        job_data = _json(data) or {}
        jobs.append(JobRow(key_of[str(run_id)], str(kind), job_data.get("user_id"), int(run_at)))
    holds = [
        HoldRow(str(kind), str(key), key_of[str(run_id)], int(since), int(size))
        for kind, key, run_id, since, size in hold_rows
    ]
    stored: dict[str, tuple[str, int]] = {}
    id_of: dict[str, str] = {}
    for internal_id, event_id, name, received_at in event_rows:
        assert event_id not in stored, f"event {event_id} stored twice"
        stored[str(event_id)] = (str(name), int(received_at))
        id_of[str(internal_id)] = str(event_id)
    run_events: dict[str, str] = {}
    for internal_id, run_id in run_event_rows:
        event_id = id_of[str(internal_id)]
        assert event_id not in run_events, f"event {event_id} joined two batches"
        run_events[event_id] = key_of[str(run_id)]
    return Snapshot(taken, runs, steps, jobs, holds, run_events, stored)


# -- the scenario ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kill:
    label: str
    incarnation: int
    detail: str
    killed_ms: int  # epoch ms just before the signal
    snap: Snapshot  # read right after the process died


@dataclasses.dataclass
class Scenario:
    tmp: pathlib.Path
    effects: Effects
    kills: list[Kill] = dataclasses.field(default_factory=list)
    timings: list[str] = dataclasses.field(default_factory=list)
    logs: list[str] = dataclasses.field(default_factory=list)

    @property
    def db(self) -> pathlib.Path:
        return self.tmp / "engine.db"

    @property
    def outbox(self) -> pathlib.Path:
        return self.tmp / app.OUTBOX_DIR

    def kill(self, label: str) -> Kill:
        return next(k for k in self.kills if k.label == label)

    def lines_of(self, incarnation: int) -> list[Line]:
        return [ln for ln in self.effects.lines if ln.incarnation == incarnation]

    def context(self) -> str:
        kills = "\n".join(f"  {k.incarnation}: {k.label}: {k.detail}" for k in self.kills)
        return f"kills:\n{kills}\ntimings: {', '.join(self.timings)}"


@contextlib.contextmanager
def incarnation(scenario: Scenario, number: int, mode: str) -> Iterator[Incarnation]:
    proc = Incarnation(APP_SCRIPT, scenario.tmp, number, mode)
    try:
        yield proc
    finally:
        proc.cleanup()
        scenario.logs.append(proc.output())


def drop(scenario: Scenario, name: str, hold_ms: int = 0) -> None:
    """Put a send into the outbox (the app sends it once it runs)."""
    scenario.outbox.mkdir(exist_ok=True)
    payload = {"events": SENDS[name], "hold_ms": hold_ms}
    app.write_json(scenario.outbox / f"{name}.json", payload)


def wait_sent(scenario: Scenario, proc: Incarnation, name: str) -> None:
    sent = scenario.outbox / f"{name}.sent"
    proc.wait_until(sent.name, sent.exists, TRIGGER_TIMEOUT)
    ids = json.loads(sent.read_text())
    assert len(ids) == len(SENDS[name]), ids


Trigger = Callable[[list[Line], Snapshot], str | None]


def kill_when(scenario: Scenario, proc: Incarnation, label: str, trigger: Trigger) -> Kill:
    started = time.monotonic()
    lines: list[Line] = []
    deadline = started + TRIGGER_TIMEOUT
    detail: str | None = None
    while detail is None:
        assert proc.proc.poll() is None, (
            f"incarnation {proc.number} exited ({proc.proc.returncode}) before the "
            f"{label} kill point\n{scenario.context()}\n{proc.output()}"
        )
        assert time.monotonic() < deadline, (
            f"{label}: no kill point within {TRIGGER_TIMEOUT}s\n{scenario.context()}"
        )
        lines += scenario.effects.poll(proc.number)
        detail = trigger(lines, read_snapshot(scenario.db))
        if detail is None:
            time.sleep(POLL)
    return _kill(scenario, proc, label, detail, started)


def _kill(scenario: Scenario, proc: Incarnation, label: str, detail: str, started: float) -> Kill:
    killed_ms = proc.sigkill()
    scenario.effects.drain(proc.number)
    kill = Kill(label, proc.number, detail, killed_ms, read_snapshot(scenario.db))
    scenario.kills.append(kill)
    scenario.timings.append(f"{label}: {time.monotonic() - started:.2f}s")
    return kill


# -- kill triggers: this incarnation's lines and the database say when -----------------------


def _time_left(start: Line) -> float:
    """At most how long the handler still sleeps (it started before we saw it)."""
    return app.step_ms(start.run_key, start.step) / 1000 - (time.monotonic() - start.seen_at)


def _group(run_key: str) -> str:
    return run_key.split(":", 1)[1][0]


def _pending_for(snap: Snapshot, run_key: str) -> int | None:
    """How long (ms) until the run's start job is due, if it has one."""
    due = snap.start_due(run_key)
    return None if due is None else due - snap.taken_ms


def filling(lines: list[Line], snap: Snapshot) -> str | None:
    batches = snap.holds_of("batch")
    if len(batches) != 1 or batches[0].size != 3:
        return None
    left = [_pending_for(snap, batches[0].run_key)]
    for tag in ("x2", "y0"):
        if snap.hold("debounce", f"debounce:{tag}") is None:
            return None
        left.append(_pending_for(snap, f"debounce:{tag}"))
    if any(ms is None or ms < MARGIN_MS for ms in left):
        return None
    asleep: list[str] = []
    for tag in WHOLE_TAGS:
        nap = snap.job(f"whole:{tag}", "sleep", "nap")
        if nap is not None:
            asleep.append(tag)
            if nap.run_at - snap.taken_ms < NAP_MARGIN_MS:
                return None
    if len(asleep) != 1:
        return None
    flying = in_flight(lines)
    started = {ln.run_key for ln in lines}
    for group in GROUPS:
        if not any(
            key.startswith(f"limited:{group}") and _time_left(start) > STEP_MARGIN
            for (key, _), start in flying.items()
        ):
            return None
        queued = [t for t in LIMITED_TAGS if t[0] == group and f"limited:{t}" not in started]
        if len(queued) < 2:
            return None
    return (
        f"batch 3/5, debounces x2 and y0 pending, whole:{asleep[0]} asleep, "
        f"{min(ms for ms in left if ms is not None)} ms to the first batch or debounce; in flight: "
        f"{sorted(f'{k}/{s}' for k, s in flying if k.startswith('limited:'))}"
    )


def limited_restarted(lines: list[Line]) -> bool:
    return any(ln.run_key.startswith("limited:") and ln.what == "start" for ln in lines)


def batch_running(lines: list[Line], snap: Snapshot) -> str | None:
    first = app.batch_key(BATCHES[0])
    flying = [
        start
        for (key, step), start in in_flight(lines).items()
        if (key, step) == (first, "work") and _time_left(start) > STEP_MARGIN
    ]
    if not flying:
        return None
    second = snap.hold("batch", app.batch_key(BATCHES[1]))
    if second is None or second.size != 2:
        return None
    left = _pending_for(snap, second.run_key)
    if left is None or left < MARGIN_MS:
        return None
    return f"{first}/work in flight (nonce {flying[0].nonce}), second batch 2/5 ({left} ms to go)"


# -- the test ----------------------------------------------------------------------------------


def test_sigkill_while_batching_debouncing_and_queueing_loses_nothing(
    tmp_path: pathlib.Path,
) -> None:
    scenario = Scenario(tmp_path, Effects(tmp_path / app.EFFECTS_FILE))
    began = time.monotonic()

    drop(scenario, "1-first")
    drop(scenario, "2-second")
    with incarnation(scenario, 0, "serve") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        wait_sent(scenario, proc, "2-second")
        kill = kill_when(scenario, proc, "filling", filling)
    _check_filling(scenario, kill)

    with incarnation(scenario, 1, "serve") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        started = time.monotonic()
        lines: list[Line] = []

        def restarted() -> bool:
            lines.extend(scenario.effects.poll(1))
            return limited_restarted(lines)

        proc.wait_until("a limited step after the restart", restarted, TRIGGER_TIMEOUT)
        drop(scenario, "3-fill", HOLD_MS)
        wait_sent(scenario, proc, "3-fill")
        kill = _kill(scenario, proc, "filled", "x3, b3, b4 recorded, app holding", started)
    _check_filled(scenario, kill)

    drop(scenario, "4-open")
    with incarnation(scenario, 2, "serve") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        wait_sent(scenario, proc, "4-open")
        kill = kill_when(scenario, proc, "batch-running", batch_running)
    _check_batch_running(scenario, kill)

    # Let the debounce of x3 come due while no engine runs.
    due = kill.snap.start_due("debounce:x3")
    assert due is not None
    assert due - now_ms() <= app.DEBOUNCE_PERIOD_MS
    time.sleep(max(0.0, (due + OVERDUE_MS - now_ms()) / 1000))

    last = 3
    with incarnation(scenario, last, "finish") as proc:
        started = time.monotonic()
        batch_due = kill.snap.start_due(app.batch_key(BATCHES[1]))
        assert batch_due is not None
        scenario.timings.append(
            f"at the last start: x3 overdue by {now_ms() - due} ms, "
            f"second batch due in {batch_due - now_ms()} ms"
        )
        code = proc.finish(FINAL_TIMEOUT)
        assert code == 0, f"the last incarnation exited {code}\n{proc.output()}"
        scenario.effects.drain(last)
        scenario.timings.append(f"to completion: {time.monotonic() - started:.2f}s")

    _check_final(scenario, last)
    print(f"\nsigkill flow: total {time.monotonic() - began:.1f}s")
    print(scenario.context())


# -- checks after each kill ----------------------------------------------------------------------


def _skipped_as_replaced(run: RunRow) -> bool:
    error = run.error or {}
    return run.status == "Skipped" and error.get("code") == "debounce_replaced"


def _executions(scenario: Scenario, key: StepKey) -> list[Line]:
    return [ln for ln in scenario.effects.lines if (ln.run_key, ln.step) == key]


def _lines_for(scenario: Scenario, prefix: str) -> list[Line]:
    return [ln for ln in scenario.effects.lines if ln.run_key.startswith(prefix)]


def _check_filling(scenario: Scenario, kill: Kill) -> None:
    """Killed with a batch 3/5 full, two debounces pending, a whole run asleep holding the
    run-level slot and limited runs in flight and queued."""
    snap, at = kill.snap, kill.killed_ms
    [hold] = snap.holds_of("batch")
    run = snap.run(app.batch_key(["b0", "b1", "b2"]))
    assert hold.run_key == app.batch_key(run.tags), hold
    assert (hold.size, run.status) == (3, "Queued"), (hold, run)
    due = snap.start_due(hold.run_key)
    assert due is not None
    assert due > at, f"batch due {due}, killed at {at}"
    assert due == hold.since + app.BATCH_TIMEOUT_MS, (due, hold)
    for tag in run.tags:
        assert snap.run_events[tag] == hold.run_key
    assert not _lines_for(scenario, "batch:"), "a batch ran before it was full or due"

    for tag in ("x0", "x1"):
        assert _skipped_as_replaced(snap.run(f"debounce:{tag}")), snap.run(f"debounce:{tag}")
    for tag in ("x2", "y0"):
        key = f"debounce:{tag}"
        assert snap.run(key).status == "Queued", snap.run(key)
        assert snap.hold("debounce", key) is not None, f"{key}: no debounce hold"
        due = snap.start_due(key)
        assert due is not None
        assert due > at, f"{key}: due {due}, killed at {at}"
    assert len(snap.holds_of("debounce")) == 2, snap.holds
    assert not _lines_for(scenario, "debounce:"), "a debounced run ran before its period"

    asleep = [tag for tag in WHOLE_TAGS if snap.job(f"whole:{tag}", "sleep", "nap") is not None]
    assert len(asleep) == 1, snap.jobs
    for tag in WHOLE_TAGS:
        key = f"whole:{tag}"
        if tag in asleep:
            nap = snap.job(key, "sleep", "nap")
            assert nap is not None
            assert nap.run_at > at, nap
            assert (key, "a") in snap.steps
            assert snap.run(key).status == "Running"
            assert not _executions(scenario, (key, "b")), f"{key}: b ran"
        else:
            assert snap.run(key).status == "Queued", snap.run(key)
            assert snap.start_due(key) is not None, f"{key}: no start job"
            ran = [ln for ln in scenario.effects.lines if ln.run_key == key]
            assert not ran, f"{key} ran beside the one asleep: {ran}"

    lines = scenario.lines_of(kill.incarnation)
    flying = in_flight(lines)
    started = {ln.run_key for ln in lines}
    for group in GROUPS:
        mine = [step for step in flying if step[0].startswith(f"limited:{group}")]
        assert mine, f"no limited step of group {group} in flight at the kill"
        for step in mine:
            assert step not in snap.steps, f"{step} recorded though its handler never ended"
        queued = [t for t in LIMITED_TAGS if t[0] == group and f"limited:{t}" not in started]
        assert len(queued) >= 2, f"group {group}: only {queued} queued"
        for tag in queued:
            assert snap.run(f"limited:{tag}").status == "Queued"
            assert snap.start_due(f"limited:{tag}") is not None, f"limited:{tag}: no start job"


def _check_filled(scenario: Scenario, kill: Kill) -> None:
    """Killed right after b3 and b4 filled the batch and x3 replaced x2, in one unit: the
    batch's hold is closed and its start job due, x2 is skipped, nothing ran yet."""
    snap, at = kill.snap, kill.killed_ms
    filling_run = scenario.kill("filling").snap.run(app.batch_key(["b0", "b1", "b2"]))
    for tag in ("x3", "b3", "b4"):
        assert tag in snap.events, f"{tag} not stored"
    key = app.batch_key(BATCHES[0])
    run = snap.run(key)
    assert run.run_id == filling_run.run_id, "the full batch is not the run that was filling"
    assert run.status == "Queued", run
    assert not snap.holds_of("batch"), f"a batch hold is left: {snap.holds}"
    due = snap.start_due(key)
    assert due is not None
    assert due <= at, f"the full batch is due at {due}, killed at {at}"
    assert not [s for s in snap.steps if s[0] == key], "the batch recorded a step"
    assert not _lines_for(scenario, "batch:"), "the batch ran before the kill"
    for tag in BATCHES[0]:
        assert snap.run_events[tag] == key, (tag, snap.run_events)

    x2 = snap.run("debounce:x2")
    assert _skipped_as_replaced(x2), x2
    assert "(x3)" in x2.error["message"], x2.error
    assert snap.run("debounce:x3").status == "Queued"
    assert snap.hold("debounce", "debounce:x3") is not None, snap.holds
    x3_due = snap.start_due("debounce:x3")
    assert x3_due is not None
    assert x3_due > at + MARGIN_MS, (x3_due, at)
    assert not _lines_for(scenario, "debounce:x"), "a debounced run of x ran"


def _check_batch_running(scenario: Scenario, kill: Kill) -> None:
    """Killed inside the first batch's handler, with the second batch 2/5 full."""
    snap, at = kill.snap, kill.killed_ms
    first = app.batch_key(BATCHES[0])
    flying = in_flight(scenario.lines_of(kill.incarnation))
    assert (first, "work") in flying, f"{first}/work not in flight at the kill"
    assert (first, "work") not in snap.steps, f"{first}/work recorded while in flight"
    assert snap.run(first).run_id == scenario.kill("filled").snap.run(first).run_id
    second = app.batch_key(BATCHES[1])
    hold = snap.hold("batch", second)
    assert hold is not None
    assert hold.size == 2, snap.holds
    assert snap.run(second).status == "Queued"
    due = snap.start_due(second)
    assert due is not None
    assert due > at, (due, at)
    assert snap.hold("debounce", "debounce:x3") is not None, "x3 no longer pending"


# -- the final check -------------------------------------------------------------------------


def _check_final(scenario: Scenario, last: int) -> None:
    context = scenario.context()
    final = read_snapshot(scenario.db)
    with contextlib.closing(
        sqlite3.connect(f"file:{scenario.db}?mode=ro", uri=True, timeout=5)
    ) as conn:
        pending = conn.execute("SELECT count(*) FROM pending").fetchone()
        pauses = conn.execute("SELECT count(*) FROM pauses").fetchone()

    # Events: each sent exactly once (ids are unique: read_snapshot checks), nothing else.
    sent = {str(e["id"]): str(e["name"]) for events in SENDS.values() for e in events}
    assert {i: n for i, (n, _) in final.events.items()} == sent, final.events
    assert set(final.runs) == FINAL_RUNS, f"runs: {sorted(final.runs)}\n{context}"
    assert final.jobs == [], f"jobs left: {final.jobs}"
    assert final.holds == [], f"flow holds left: {final.holds}"
    assert (pending, pauses) == ((0,), (0,)), (pending, pauses)

    # Batches: every batch event in exactly one batch, in the order sent; each batch ran.
    batch_tags = [str(e["id"]) for events in SENDS.values() for e in events if e["id"][0] == "b"]
    assert final.run_events == {tag: app.batch_key(tags) for tags in BATCHES for tag in tags}, (
        final.run_events
    )
    assert sorted(batch_tags) == sorted(t for tags in BATCHES for t in tags)
    for tags in BATCHES:
        run = final.run(app.batch_key(tags))
        assert run.tags == tags, run
        assert [e["id"] for e in run.events] == tags, run.events
    # The second batch started at its timeout, not earlier (it was open across a restart).
    second = final.run(app.batch_key(BATCHES[1]))
    opened = final.events["b5"][1]
    assert second.started_at is not None
    assert second.started_at >= opened + app.BATCH_TIMEOUT_MS, (second, opened)

    # Debounces: one completed run per key, with the last event; the others replaced.
    for tags in DEBOUNCE_KEYS.values():
        *replaced, kept = tags
        run = final.run(f"debounce:{kept}")
        assert run.status == "Completed", run
        assert run.started_at is not None
        received = final.events[kept][1]
        assert run.started_at >= received + app.DEBOUNCE_PERIOD_MS, (run, received)
        for tag in replaced:
            skipped = final.run(f"debounce:{tag}")
            assert _skipped_as_replaced(skipped), skipped
            assert not [s for s in final.steps if s[0] == f"debounce:{tag}"], skipped
    assert not [ln for ln in scenario.effects.lines if ln.run_key in _replaced_keys()]

    # Every other run completed with the expected output.
    for key, run in sorted(final.runs.items()):
        if key in _replaced_keys():
            continue
        assert run.status == "Completed", f"run {key} is {run.status}\n{context}"
        expected = app.expected_output(key, run.events[0], len(run.events))
        assert run.output == expected, f"{key}: {run.output} != {expected}\n{context}"
    for tag in WHOLE_TAGS:
        nap = final.steps[(f"whole:{tag}", "nap")]
        assert nap.started_at is not None
        assert nap.ended_at - nap.started_at >= app.NAP_MS, nap
    done = json.loads((scenario.tmp / app.DONE_FILE).read_text())
    assert len(done) == len(FINAL_RUNS), done

    _check_executions(scenario, final)
    _check_step_limit(scenario, last)
    _check_run_limit(scenario, final)

    # The engine logged no errors in any incarnation.
    for number, log in enumerate(scenario.logs):
        assert "Traceback" not in log, f"incarnation {number}:\n{log}"
        assert "ERROR" not in log, f"incarnation {number}:\n{log}"
    assert last == len(scenario.kills)


def _replaced_keys() -> set[str]:
    return {f"debounce:{tag}" for tags in DEBOUNCE_KEYS.values() for tag in tags[:-1]}


def _check_executions(scenario: Scenario, final: Snapshot) -> None:
    """No handler ran after its step was recorded; memos recorded at a kill never change;
    a step ran again only after a kill that caught it unrecorded."""
    context = scenario.context()
    all_lines = scenario.effects.lines
    expected_steps = {
        (key, step): "StepRun"
        for key in FINAL_RUNS - _replaced_keys()
        for step in app.STEPS[app.function_of(key)]
    }
    expected_steps.update({(f"whole:{tag}", "nap"): "Sleep" for tag in WHOLE_TAGS})
    assert {key: rec.op for key, rec in final.steps.items()} == expected_steps, context
    assert {(ln.run_key, ln.step) for ln in all_lines} <= set(expected_steps)
    kills = [KillPoint(k.label, k.incarnation, k.snap.steps) for k in scenario.kills]
    reruns = check_executions(all_lines, final.steps, kills, context)
    # The first batch's handler ran once where the last kill caught it, and once more after.
    first = (app.batch_key(BATCHES[0]), "work")
    ran_in = [ln.incarnation for ln in _executions(scenario, first) if ln.what == "start"]
    assert ran_in == [2, 3], _executions(scenario, first)
    print(f"\nre-run steps (killed in flight, not recorded): {reruns or 'none'}")


def _check_step_limit(scenario: Scenario, last: int) -> None:
    """Within each incarnation, at most LIMIT ``limited`` handlers per group overlapped (a
    handler killed in flight counts until its process died)."""
    peaks: list[dict[str, int]] = []
    for number in range(last + 1):
        flying: dict[str, set[tuple[str, str, str]]] = {g: set() for g in GROUPS}
        peak = dict.fromkeys(GROUPS, 0)
        for ln in scenario.lines_of(number):
            if not ln.run_key.startswith("limited:"):
                continue
            mine = flying[_group(ln.run_key)]
            execution = (ln.run_key, ln.step, ln.nonce)
            if ln.what == "start":
                mine.add(execution)
                peak[_group(ln.run_key)] = max(peak[_group(ln.run_key)], len(mine))
            else:
                assert execution in mine, f"incarnation {number}: end without start: {ln}"
                mine.discard(execution)
        peaks.append(peak)
        for group, most in peak.items():
            assert most <= app.LIMIT, (
                f"incarnation {number}: {most} limited handlers of group {group} at once "
                f"(limit {app.LIMIT})\n{scenario.context()}"
            )
    # The limit was reached (so the key kept the groups apart, and it was really tested).
    assert peaks[0] == dict.fromkeys(GROUPS, app.LIMIT), peaks
    scenario.timings.append(f"limited peaks per incarnation: {peaks}")


def _check_run_limit(scenario: Scenario, final: Snapshot) -> None:
    """From the start of a ``whole`` run's recorded ``a`` to the end of its recorded ``b``
    the run holds the run-level slot (limit 1), across restarts: no handler of another
    ``whole`` run may start inside that span (in the order of the side-effect file)."""
    lines = scenario.effects.lines
    index = {(ln.run_key, ln.step, ln.nonce, ln.what): i for i, ln in enumerate(lines)}
    spans: dict[str, tuple[int, int]] = {}
    for tag in WHOLE_TAGS:
        key = f"whole:{tag}"
        a, b = final.steps[(key, "a")].nonce, final.steps[(key, "b")].nonce
        assert a is not None
        assert b is not None
        spans[key] = (index[(key, "a", a, "start")], index[(key, "b", b, "end")])
    for i, ln in enumerate(lines):
        if not ln.run_key.startswith("whole:") or ln.what != "start":
            continue
        for key, (begin, end) in spans.items():
            assert key == ln.run_key or not begin < i < end, (
                f"{ln.run_key}/{ln.step} started (incarnation {ln.incarnation}) while {key} "
                f"held the run-level slot\n{scenario.context()}"
            )
    order = sorted(spans, key=lambda k: spans[k][0])
    scenario.timings.append(f"whole runs in order: {order}")
