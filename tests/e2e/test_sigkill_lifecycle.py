"""SIGKILL the engine while runs sleep, wait for events or wait on an invoked child; restart
it and check that none of them is lost, duplicated or re-run.

The app (``lifecycle_app.py``) runs :data:`~lifecycle_app.RUNS_PER_FUNCTION` runs each of
``sleeper`` (step, 1.5 s durable sleep, step), ``waiter`` (step, wait for a reply event
matched on ``k``, step), ``parent`` (step, invoke ``child``: step, 1.5 s sleep, step; then a
step) and ``timeouter`` (sync: step, a 1.5 s wait that must time out, step). Step handlers
log ``start``/``end`` lines with a per-execution nonce to a side-effect file. Only one engine
may open the database, so the test sends events through the app: it drops JSON files in an
outbox directory that the running app polls (see the app's docstring).

Kill points, each in a fresh incarnation of the process, all decided from the database
(read-only, beside the engine) and the side-effect file:

1. ``sleeping``: every ``sleeper`` run's ``nap`` sleep job and every ``timeouter`` run's
   ``late`` pause (and its timeout job) are stored, each due at least :data:`MARGIN_MS`
   later. The next incarnation starts at once.
2. ``child-sleeping``: the naps and late waits of kill 1 have come due and been recorded
   in this incarnation (the test reports whether they were still pending at its start),
   every ``parent`` run's invoke pause is stored and every ``child`` run's ``cnap`` sleep
   job is due at least :data:`MARGIN_MS` later. The test then waits until every ``cnap``
   is overdue before restarting: those sleeps come due while no engine runs. (Before
   arming this kill the test sends decoy ``reply``/``late`` events with ``k=99``.)
3. ``child-running``: a ``child`` run's ``c2`` handler is in flight (at least 150 ms still
   to sleep) and its parent's invoke pause is stored.
4. ``waiting``: every run but the ``waiter`` runs has completed; every ``waiter`` run's
   pause (and its timeout job) is stored.
5. ``replies-sent``: the test sends a reply per ``waiter`` (plus a second reply for ``k=0``
   and one for nobody); the app records them, acknowledges, and blocks its loop; the test
   kills it at once: the events are stored and the waits' pauses consumed, but no resume
   job has run.

Each kill is checked against the database just after it (the state it claims, e.g. a sleep
job present and not yet due). A last incarnation runs everything to completion; then:

* every run is ``Completed`` with the expected output: each ``waiter`` got its first reply,
  each ``parent`` its child's output, each ``timeouter`` ``None``; one run per function per
  ``k`` (one ``child`` per ``parent``, invoked by it), and exactly the events sent;
* every step is recorded once; each event is the memo of at most one wait; no job, pause
  or pending member is left;
* a sleep or wait pending at a kill kept the start stored before the kill (it was not
  rescheduled by the restart) and ended no earlier than it was due;
* no handler ran after its step was recorded (a step recorded at a kill never runs again)
  and the memo recorded is that of an execution whose ``start`` and ``end`` are logged;
  memos recorded at a kill never change.
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

from tests.e2e import lifecycle_app as app
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

APP_SCRIPT = pathlib.Path(__file__).with_name("lifecycle_app.py")
N = app.RUNS_PER_FUNCTION
READY_TIMEOUT = 15.0
TRIGGER_TIMEOUT = 10.0
FINAL_TIMEOUT = 30.0
#: A timer (sleep job, pause) counts as "not yet due" at a kill only with this long (ms) to
#: go when the kill is decided, so it is still pending when the signal lands.
MARGIN_MS = 500
#: A handler counts as in flight only with this long (s) still to sleep.
STEP_MARGIN = 0.15
#: The app blocks this long after recording the replies; the test kills it well before.
HOLD_MS = 5000


@dataclasses.dataclass(frozen=True)
class JobRow:
    run_key: str
    kind: str
    user_id: str | None
    run_at: int


@dataclasses.dataclass(frozen=True)
class PauseRow:
    run_key: str
    user_id: str
    kind: str
    event_name: str
    expires_at: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the database holds, read at ``taken_ms`` (epoch ms, the engine's clock)."""

    taken_ms: int
    runs: dict[str, tuple[str, str, Any]]  # run key -> (run id, status, events)
    steps: dict[StepKey, Recorded]
    jobs: list[JobRow]
    pauses: list[PauseRow]
    events: list[tuple[str, str]]  # (name, id)

    def job(self, run_key: str, kind: str, user_id: str) -> JobRow | None:
        found = [j for j in self.jobs if (j.run_key, j.kind, j.user_id) == (run_key, kind, user_id)]
        assert len(found) <= 1, found
        return found[0] if found else None

    def pause(self, run_key: str, user_id: str) -> PauseRow | None:
        found = [p for p in self.pauses if (p.run_key, p.user_id) == (run_key, user_id)]
        assert len(found) <= 1, found
        return found[0] if found else None

    def event_ids(self, name: str) -> list[str]:
        return sorted(i for n, i in self.events if n == name)


@dataclasses.dataclass(frozen=True)
class Kill:
    label: str
    incarnation: int
    detail: str
    killed_ms: int  # epoch ms just before the signal
    snap: Snapshot  # read right after the process died


def _run_key(function_id: str, events: Any) -> str:
    prefix = app.APP_ID + "-"
    assert function_id.startswith(prefix), function_id
    k = events[0]["data"]["k"]
    assert isinstance(k, int), events
    return app.run_key(function_id[len(prefix) :], k)


def read_snapshot(db: pathlib.Path) -> Snapshot:
    """The database, read-only (WAL: safe beside a running engine)."""
    taken = now_ms()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        run_rows = conn.execute("SELECT run_id, function_id, events, status FROM runs").fetchall()
        step_rows = conn.execute(
            "SELECT run_id, user_id, op, memo, started_at, ended_at FROM steps"
        ).fetchall()
        job_rows = conn.execute("SELECT run_id, kind, run_at, data FROM jobs").fetchall()
        pause_rows = conn.execute(
            "SELECT run_id, kind, event_name, expires_at, data FROM pauses"
        ).fetchall()
        event_rows = conn.execute("SELECT name, id FROM events").fetchall()
    runs: dict[str, tuple[str, str, Any]] = {}
    key_of: dict[str, str] = {}
    for run_id, function_id, events_json, status in run_rows:
        events = json.loads(events_json)
        key = _run_key(function_id, events)
        assert key not in runs, f"run {key} duplicated"
        runs[key] = (str(run_id), str(status), events)
        key_of[str(run_id)] = key
    steps: dict[StepKey, Recorded] = {}
    for run_id, step_user_id, op, memo, started_at, ended_at in step_rows:
        skey = (key_of[str(run_id)], str(step_user_id))
        assert skey not in steps, f"step {skey} recorded twice"
        parsed: Any = None if memo is None else json.loads(memo)
        nonce = str(parsed["data"]["nonce"]) if op == "StepRun" else None
        steps[skey] = Recorded(str(op), parsed, nonce, started_at, int(ended_at))
    jobs: list[JobRow] = []
    for run_id, kind, run_at, data in job_rows:
        job_data = {} if data is None else json.loads(data)
        user_id = job_data.get("user_id")
        jobs.append(JobRow(key_of[str(run_id)], str(kind), user_id, int(run_at)))
    pauses = [
        PauseRow(
            key_of[str(run_id)],
            str(json.loads(data)["user_id"]),
            str(kind),
            str(event_name),
            int(expires_at),
        )
        for run_id, kind, event_name, expires_at, data in pause_rows
    ]
    events_out = [(str(name), str(i)) for name, i in event_rows]
    return Snapshot(taken, runs, steps, jobs, pauses, events_out)


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


def send_via_outbox(
    scenario: Scenario, proc: Incarnation, name: str, events: list[dict[str, Any]], hold_ms: int
) -> None:
    """Have the running app send ``events``; returns once it says they are recorded."""
    app.write_json(scenario.outbox / f"{name}.json", {"events": events, "hold_ms": hold_ms})
    sent = scenario.outbox / f"{name}.sent"
    proc.wait_until(f"{sent.name}", sent.exists, TRIGGER_TIMEOUT)
    ids = json.loads(sent.read_text())
    assert len(ids) == len(events), ids


# -- kill triggers: look at this incarnation's lines and the database, say when ----------

Trigger = Callable[[list[Line], Snapshot], str | None]


def _keys(function: str) -> list[str]:
    return [app.run_key(function, k) for k in range(N)]


def sleeping(lines: list[Line], snap: Snapshot) -> str | None:
    left: list[int] = []
    for key in _keys("sleeper"):
        job = snap.job(key, "sleep", "nap")
        if job is None or job.run_at - snap.taken_ms < MARGIN_MS:
            return None
        left.append(job.run_at - snap.taken_ms)
    for key in _keys("timeouter"):
        pause = snap.pause(key, "late")
        if pause is None or pause.expires_at - snap.taken_ms < MARGIN_MS:
            return None
        left.append(pause.expires_at - snap.taken_ms)
    return f"naps and late waits pending, {min(left)}-{max(left)} ms to go"


def child_sleeping(lines: list[Line], snap: Snapshot) -> str | None:
    # The naps and the late waits stored at the first kill have come due in this process.
    if not all((key, "nap") in snap.steps for key in _keys("sleeper")):
        return None
    if not all((key, "late") in snap.steps for key in _keys("timeouter")):
        return None
    left: list[int] = []
    for k in range(N):
        pause = snap.pause(app.run_key("parent", k), "call")
        job = snap.job(app.run_key("child", k), "sleep", "cnap")
        if pause is None or pause.kind != "invoke" or job is None:
            return None
        if job.run_at - snap.taken_ms < MARGIN_MS:
            return None
        left.append(job.run_at - snap.taken_ms)
    return f"invoke pauses stored, children's cnap {min(left)}-{max(left)} ms to go"


def child_running(lines: list[Line], snap: Snapshot) -> str | None:
    for (key, step), start in sorted(in_flight(lines).items()):
        if step != "c2":
            continue
        left = app.DURATIONS_MS["c2"] / 1000 - (time.monotonic() - start.seen_at)
        parent = "parent-" + key.rsplit("-", 1)[1]
        if left > STEP_MARGIN and snap.pause(parent, "call") is not None:
            return f"{key}/c2 in flight (nonce {start.nonce}), {parent} paused on it"
    return None


def waiting(lines: list[Line], snap: Snapshot) -> str | None:
    for key, (_, status, _) in snap.runs.items():
        if not key.startswith("waiter-") and status != "Completed":
            return None
    if len(snap.runs) != len(app.FUNCTIONS) * N:
        return None
    if not all(snap.pause(key, "reply") is not None for key in _keys("waiter")):
        return None
    return "every run but the waiters completed, the waiters' pauses stored"


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


# -- the test ----------------------------------------------------------------------------


def _event(name: str, k: int, event_id: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "data": {"k": k, **extra}, "id": event_id}


DECOYS = [
    _event(app.REPLY_EVENT, 99, "reply-decoy-early", answer="nobody"),
    _event(app.LATE_EVENT, 99, "late-decoy"),
]
REPLIES = [
    *(_event(app.REPLY_EVENT, k, app.reply_id(k), answer=app.reply_answer(k)) for k in range(N)),
    _event(app.REPLY_EVENT, 0, "reply-0-again", answer="second"),
    _event(app.REPLY_EVENT, 99, "reply-decoy", answer="nobody"),
]


def test_sigkill_while_sleeping_waiting_and_invoking_loses_nothing(
    tmp_path: pathlib.Path,
) -> None:
    scenario = Scenario(tmp_path, Effects(tmp_path / app.EFFECTS_FILE))
    began = time.monotonic()

    with incarnation(scenario, 0, "start") as proc:
        proc.wait_for_output("sent", READY_TIMEOUT)
        kill = kill_when(scenario, proc, "sleeping", sleeping)
    _check_sleeping(scenario, kill)

    with incarnation(scenario, 1, "resume") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        pending = [kill.snap.job(key, "sleep", "nap") for key in _keys("sleeper")]
        due = min(job.run_at for job in pending if job is not None)
        scenario.timings.append(f"naps due {due - now_ms()} ms after restart")
        send_via_outbox(scenario, proc, "decoys", DECOYS, 0)
        kill = kill_when(scenario, proc, "child-sleeping", child_sleeping)
    _check_child_sleeping(scenario, kill)
    # Let every child's sleep come due while no engine runs.
    naps = [kill.snap.job(key, "sleep", "cnap") for key in _keys("child")]
    due = max(job.run_at for job in naps if job is not None)
    assert due - now_ms() <= app.CHILD_NAP_MS
    time.sleep(max(0.0, (due - now_ms()) / 1000 + 0.05))

    with incarnation(scenario, 2, "resume") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        scenario.timings.append(f"cnaps overdue by {now_ms() - due} ms at restart")
        kill = kill_when(scenario, proc, "child-running", child_running)
    _check_child_running(scenario, kill)

    with incarnation(scenario, 3, "resume") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        kill = kill_when(scenario, proc, "waiting", waiting)
    _check_waiting(scenario, kill)

    with incarnation(scenario, 4, "resume") as proc:
        proc.wait_for_output("ready", READY_TIMEOUT)
        started = time.monotonic()
        send_via_outbox(scenario, proc, "replies", REPLIES, HOLD_MS)
        kill = _kill(scenario, proc, "replies-sent", "replies recorded, app holding", started)
    _check_replies_sent(scenario, kill)

    last = 5
    with incarnation(scenario, last, "resume") as proc:
        started = time.monotonic()
        code = proc.finish(FINAL_TIMEOUT)
        assert code == 0, f"the last incarnation exited {code}\n{proc.output()}"
        scenario.effects.drain(last)
        scenario.timings.append(f"to completion: {time.monotonic() - started:.2f}s")

    _check_final(scenario, last)
    print(f"\nsigkill lifecycle: total {time.monotonic() - began:.1f}s")
    print(scenario.context())


# -- checks after each kill ----------------------------------------------------------------


def _lines_of(scenario: Scenario, incarnation: int) -> list[Line]:
    return [ln for ln in scenario.effects.lines if ln.incarnation == incarnation]


def _started(scenario: Scenario, key: StepKey) -> list[Line]:
    return [
        ln for ln in scenario.effects.lines if (ln.run_key, ln.step) == key and ln.what == "start"
    ]


def _check_sleeping(scenario: Scenario, kill: Kill) -> None:
    """Killed with every nap and every timing-out wait stored and not yet due."""
    snap, at = kill.snap, kill.killed_ms
    for key in _keys("sleeper"):
        job = snap.job(key, "sleep", "nap")
        assert job is not None, f"{key}: no nap job at the kill"
        assert job.run_at > at, f"{key}: nap job {job} due at the kill ({at})"
        assert (key, "nap") not in snap.steps
        assert (key, "a") in snap.steps
        assert not _started(scenario, (key, "b"))
    for key in _keys("timeouter"):
        pause = snap.pause(key, "late")
        assert pause is not None, f"{key}: no pause at the kill"
        assert pause.expires_at > at, f"{key}: pause {pause} expired at the kill ({at})"
        timeout = snap.job(key, "pause-timeout", "late")
        assert timeout is not None, f"{key}: no timeout job at the kill"
        assert timeout.run_at == pause.expires_at, timeout
        assert (key, "late") not in snap.steps
        assert not _started(scenario, (key, "t2"))


def _check_child_sleeping(scenario: Scenario, kill: Kill) -> None:
    """Killed with every parent paused on its child and every child's nap not yet due."""
    snap, at = kill.snap, kill.killed_ms
    for k in range(N):
        assert (app.run_key("sleeper", k), "nap") in snap.steps
        assert (app.run_key("timeouter", k), "late") in snap.steps
        parent, child = app.run_key("parent", k), app.run_key("child", k)
        pause = snap.pause(parent, "call")
        assert pause is not None, f"{parent}: no pause at the kill"
        assert pause.kind == "invoke", f"{parent}: pause {pause}"
        assert snap.job(parent, "pause-timeout", "call") is not None
        assert (parent, "call") not in snap.steps
        job = snap.job(child, "sleep", "cnap")
        assert job is not None, f"{child}: no cnap job at the kill"
        assert job.run_at > at, f"{child}: cnap job {job} due at the kill ({at})"
        assert (child, "c1") in snap.steps
        assert (child, "cnap") not in snap.steps
        assert not _started(scenario, (child, "c2"))
        assert snap.runs[child][1] == "Running", snap.runs[child]


def _check_child_running(scenario: Scenario, kill: Kill) -> None:
    """Killed inside a child's c2, its parent still paused on the invoke."""
    flying = [
        key
        for key in in_flight(_lines_of(scenario, kill.incarnation))
        if key[0].startswith("child-") and key[1] == "c2"
    ]
    assert flying, f"{kill.label}: no c2 in flight at the kill ({kill.detail})"
    for key in flying:
        parent = "parent-" + key[0].rsplit("-", 1)[1]
        assert key not in kill.snap.steps
        assert kill.snap.pause(parent, "call") is not None
        assert (parent, "call") not in kill.snap.steps


def _check_waiting(scenario: Scenario, kill: Kill) -> None:
    """Killed with the waiters paused: pauses and timeout jobs stored, no reply yet."""
    snap = kill.snap
    for key in _keys("waiter"):
        pause = snap.pause(key, "reply")
        assert pause is not None, f"{key}: no pause at the kill"
        assert (pause.kind, pause.event_name) == ("wait", app.REPLY_EVENT), pause
        assert snap.job(key, "pause-timeout", "reply") is not None
        assert (key, "reply") not in snap.steps
        assert not _started(scenario, (key, "after"))
    assert snap.event_ids(app.REPLY_EVENT) == ["reply-decoy-early"]


def _check_replies_sent(scenario: Scenario, kill: Kill) -> None:
    """Killed right after the replies were recorded: each waiter's pause was consumed in
    the same transaction (its timeout job gone, a resume job stored), none resumed yet."""
    snap = kill.snap
    expected = sorted([str(e["id"]) for e in REPLIES] + ["reply-decoy-early"])
    assert snap.event_ids(app.REPLY_EVENT) == expected, snap.events
    for key in _keys("waiter"):
        assert snap.pause(key, "reply") is None, f"{key}: pause left after its reply"
        assert snap.job(key, "pause-timeout", "reply") is None, f"{key}: timeout job left"
        assert snap.job(key, "resume", "reply") is not None, f"{key}: no resume job: {snap.jobs}"
        assert (key, "reply") not in snap.steps, f"{key}: resumed before the kill"


# -- the final check -------------------------------------------------------------------------


def _check_final(scenario: Scenario, last: int) -> None:
    context = scenario.context()
    final = read_snapshot(scenario.db)
    with contextlib.closing(
        sqlite3.connect(f"file:{scenario.db}?mode=ro", uri=True, timeout=5)
    ) as conn:
        outputs_rows = conn.execute("SELECT run_id, output FROM runs").fetchall()
        pending = conn.execute("SELECT count(*) FROM pending").fetchone()
    output_of = {str(run_id): json.loads(out) for run_id, out in outputs_rows}

    # Runs: one per function per k, all completed with the expected output.
    expected_keys = {app.run_key(fn, k) for fn in app.FUNCTIONS for k in range(N)}
    assert set(final.runs) == expected_keys, f"runs: {sorted(final.runs)}\n{context}"
    for run_key, (run_id, status, _) in sorted(final.runs.items()):
        assert status == "Completed", f"run {run_key} is {status}\n{context}"
        function, index = run_key.rsplit("-", 1)
        expected = app.expected_output(function, int(index))
        assert output_of[run_id] == expected, f"{run_key}: {output_of[run_id]}\n{context}"
    for k in range(N):
        meta = final.runs[app.run_key("child", k)][2][0]["data"]["_inngest"]
        assert meta["source_run_id"] == final.runs[app.run_key("parent", k)][0], meta
    done = json.loads((scenario.tmp / app.DONE_FILE).read_text())
    assert len(done) == len(app.TRIGGERED) * N
    assert all(r["status"] == "Completed" for r in done), done

    # Events: exactly those sent, one invoke and one finish per child; nothing left over.
    assert final.event_ids(app.GO_EVENT) == sorted(f"go-{k}" for k in range(N))
    sent_replies = [str(e["id"]) for e in REPLIES + DECOYS if e["name"] == app.REPLY_EVENT]
    assert final.event_ids(app.REPLY_EVENT) == sorted(sent_replies), final.events
    assert final.event_ids(app.LATE_EVENT) == ["late-decoy"], final.events
    assert len(final.event_ids("inngest/function.invoked")) == N, final.events
    assert len(final.event_ids("inngest/function.finished")) == N, final.events
    assert len(final.events) == 3 * N + len(REPLIES) + len(DECOYS), final.events
    assert final.jobs == [], f"jobs left: {final.jobs}"
    assert final.pauses == [], f"pauses left: {final.pauses}"
    assert pending == (0,), f"parallel members left pending: {pending}"

    # Steps: all recorded, with the right op and result; each event matched at most once.
    expected_steps = {
        (app.run_key(fn, k), step): "StepRun"
        for fn, steps in app.STEPS.items()
        for step in steps
        for k in range(N)
    }
    for fn, ops in app.ENGINE_STEPS.items():
        for k in range(N):
            expected_steps.update({(app.run_key(fn, k), step): op for step, op in ops.items()})
    assert {key: rec.op for key, rec in final.steps.items()} == expected_steps, context
    matched: list[str] = []
    for rec in final.steps.values():
        if rec.op == "WaitForEvent" and rec.memo is not None:
            matched.append(str(rec.memo["id"]))
    assert sorted(matched) == sorted(app.reply_id(k) for k in range(N)), matched
    for k in range(N):
        reply = final.steps[(app.run_key("waiter", k), "reply")].memo
        assert (reply["name"], reply["data"]["k"]) == (app.REPLY_EVENT, k), reply
        late = final.steps[(app.run_key("timeouter", k), "late")]
        assert late.memo is None, late
        call = final.steps[(app.run_key("parent", k), "call")].memo
        assert call == {"data": app.child_output(k)}, call
        # Timers neither fired early nor were restarted: the recorded span is the duration
        # from when the step was first scheduled.
        for step_key, ms in (
            ((app.run_key("sleeper", k), "nap"), app.NAP_MS),
            ((app.run_key("child", k), "cnap"), app.CHILD_NAP_MS),
            ((app.run_key("timeouter", k), "late"), app.LATE_TIMEOUT_MS),
        ):
            timer = final.steps[step_key]
            assert timer.started_at is not None, timer
            assert timer.ended_at - timer.started_at >= ms, f"{step_key}: {timer}"

    _check_timers_kept(scenario, final)
    _check_executions(scenario, final)

    # The engine logged no errors in any incarnation.
    for number, log in enumerate(scenario.logs):
        assert "Traceback" not in log, f"incarnation {number}:\n{log}"
        assert "ERROR" not in log, f"incarnation {number}:\n{log}"
    assert last == len(scenario.kills)


def _check_executions(scenario: Scenario, final: Snapshot) -> None:
    """No handler ran after its step was recorded; memos recorded at a kill never change."""
    context = scenario.context()
    all_lines = scenario.effects.lines
    handler_steps = {key for key, rec in final.steps.items() if rec.op == "StepRun"}
    assert {(ln.run_key, ln.step) for ln in all_lines} <= handler_steps
    kills = [KillPoint(k.label, k.incarnation, k.snap.steps) for k in scenario.kills]
    reruns = check_executions(all_lines, final.steps, kills, context)
    print(f"\nre-run steps (killed in flight, not recorded): {reruns or 'none'}")


def _check_timers_kept(scenario: Scenario, final: Snapshot) -> None:
    """A timer pending at a kill was neither rescheduled nor fired early after the restart:
    its recorded start is the one stored before the kill, its end no earlier than due."""
    by_label = {kill.label: kill for kill in scenario.kills}
    timers = [
        ("sleeping", "sleeper", "nap", app.NAP_MS),
        ("sleeping", "timeouter", "late", app.LATE_TIMEOUT_MS),
        ("child-sleeping", "child", "cnap", app.CHILD_NAP_MS),
    ]
    for label, function, step, ms in timers:
        snap = by_label[label].snap
        for key in _keys(function):
            if step == "late":
                pause = snap.pause(key, step)
                assert pause is not None
                due = pause.expires_at
            else:
                job = snap.job(key, "sleep", step)
                assert job is not None
                due = job.run_at
            rec = final.steps[(key, step)]
            assert rec.started_at == due - ms, f"{key}/{step}: due {due}, recorded {rec}"
            assert rec.ended_at >= due, f"{key}/{step}: due {due}, recorded {rec}"
