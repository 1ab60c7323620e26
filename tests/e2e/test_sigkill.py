"""Kill the engine process with SIGKILL at chosen moments, restart it, and check nothing is lost.

The app (``sigkill_app.py``) runs three functions, four runs each: sequential steps with a
durable sleep, an async parallel group whose branches have one or two steps, and a sync
function with a sync parallel group. Every step handler logs ``start``/``end`` lines with a
per-execution nonce to a side-effect file and returns that nonce, so the memo the engine
recorded names the one execution it kept.

Kill points, in this order, each in a fresh incarnation of the process:

1. ``during-step``: a ``seq`` run's ``s2`` handler has started (it sleeps 250 ms);
2. ``between-steps``: a ``seq`` run's ``s3`` has ended and is recorded in the database,
   its durable ``nap`` is running and ``s4`` has not started;
3. ``async-parallel``: a ``par`` run has at least one branch step recorded and at least
   two branch handlers in flight with 150 ms or more still to sleep (so they are still
   running when the signal lands);
4. ``sync-parallel``: the same for a ``mixed`` (sync) run's group;
5. to 7. ``random-*``: a pseudo-random delay after the process is ready (seed in the
   failure message; set ``SIGKILL_SEED`` to replay one).

After each kill the test snapshots the recorded steps (the database read directly). A last
incarnation runs everything to completion. Then:

* every run is ``Completed`` with the expected output, one run per function per event, and
  exactly the events sent;
* every step of every run is recorded, and the memo recorded is that of an execution whose
  ``start`` and ``end`` are both in the side-effect file;
* no handler ran after its step was recorded: every other execution of the step happened
  in an earlier incarnation that was killed before the step was recorded, and no step ran
  twice in one incarnation;
* so a step recorded at any kill snapshot has exactly one ``end`` besides "lost results"
  (an execution that ended but was killed before its result committed; counted and shown
  in the message, legitimately non-zero only for the random kills).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import sigkill_app as app
from tests.e2e.sigkill_support import POLL, Effects, Incarnation, Line, StepKey, in_flight

pytestmark = pytest.mark.slow

APP_SCRIPT = pathlib.Path(__file__).with_name("sigkill_app.py")
TRIGGER_TIMEOUT = 10.0
FINAL_TIMEOUT = 30.0
#: A parallel kill counts only branch handlers with at least this long (seconds) still to
#: sleep, so that they are still in flight when the signal lands, even on a loaded machine.
MARGIN = 0.15
#: Kills at pseudo-random moments; raise it to soak the engine (``SIGKILL_RANDOM_KILLS=30``).
RANDOM_KILLS = int(os.environ.get("SIGKILL_RANDOM_KILLS", "3"))


@dataclasses.dataclass(frozen=True)
class Recorded:
    op: str
    nonce: str | None  # None for a durable sleep


@dataclasses.dataclass(frozen=True)
class Kill:
    label: str
    incarnation: int
    detail: str
    recorded: dict[StepKey, Recorded]


def read_recorded(db: pathlib.Path) -> dict[StepKey, Recorded]:
    """Every recorded step, from the database (WAL; read-only, safe beside the engine)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT r.function_id, r.events, s.user_id, s.op, s.memo "
            "FROM steps s JOIN runs r ON r.run_id = s.run_id"
        ).fetchall()
    recorded: dict[StepKey, Recorded] = {}
    for function_id, events, user_id, op, memo in rows:
        key = (_run_key(function_id, events), str(user_id))
        assert key not in recorded, f"step {key} recorded twice"
        nonce: str | None = None
        if op == "StepRun":
            nonce = str(json.loads(memo)["data"]["nonce"])
        recorded[key] = Recorded(str(op), nonce)
    return recorded


def _run_key(function_id: str, events: bytes) -> str:
    prefix = app.APP_ID + "-"
    assert function_id.startswith(prefix), function_id
    k = json.loads(events)[0]["data"]["k"]
    return app.run_key(function_id[len(prefix) :], int(k))


# -- kill triggers: look at the lines of this incarnation (and the db), say when -----------

Trigger = Callable[[list[Line], pathlib.Path], str | None]


def _time_left(start: Line) -> float:
    """At most how long the handler still sleeps (it started before we saw it)."""
    k = int(start.run_key.rsplit("-", 1)[1])
    return app.step_ms(k, start.step) / 1000 - (time.monotonic() - start.seen_at)


def during_step(lines: list[Line], db: pathlib.Path) -> str | None:
    for key, start in in_flight(lines).items():
        # s2 sleeps 250 ms: kill 30 ms after we saw it start, well inside the handler.
        if key[0].startswith("seq-") and key[1] == "s2" and _time_left(start) < 0.22:
            return f"{key} in flight (nonce {start.nonce})"
    return None


def between_steps(lines: list[Line], db: pathlib.Path) -> str | None:
    ended = [(ln.run_key, ln.step) for ln in lines if ln.what == "end" and ln.step == "s3"]
    if not ended:
        return None
    recorded = read_recorded(db)
    for key in ended:
        if key in recorded:
            return f"{key} ended and recorded"
    return None


def _parallel(function: str) -> Trigger:
    branch = app.BRANCH_STEPS[function]

    def trigger(lines: list[Line], db: pathlib.Path) -> str | None:
        by_run: dict[str, list[str]] = {}
        for (run_key, step), start in in_flight(lines).items():
            # Only branches that will still be running when the kill lands.
            if run_key.startswith(function + "-") and step in branch and _time_left(start) > MARGIN:
                by_run.setdefault(run_key, []).append(step)
        candidates = {rk: steps for rk, steps in by_run.items() if len(steps) >= 2}
        if not candidates:
            return None
        recorded = read_recorded(db)
        for run_key, flying in sorted(candidates.items()):
            done = sorted(s for s in branch if (run_key, s) in recorded)
            if done:
                return f"{run_key}: {sorted(flying)} in flight, {done} recorded"
        return None

    return trigger


def random_moment(delay: float) -> Trigger:
    started = time.monotonic()

    def trigger(lines: list[Line], db: pathlib.Path) -> str | None:
        if time.monotonic() - started < delay:
            return None
        flying = sorted(f"{rk}/{s}" for rk, s in in_flight(lines))
        return f"{delay * 1000:.0f} ms after ready, in flight: {flying}"

    return trigger


# -- the test ----------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    tmp: pathlib.Path
    seed: int
    effects: Effects
    kills: list[Kill] = dataclasses.field(default_factory=list)
    timings: list[str] = dataclasses.field(default_factory=list)
    logs: list[str] = dataclasses.field(default_factory=list)

    @property
    def db(self) -> pathlib.Path:
        return self.tmp / "engine.db"

    def context(self) -> str:
        kills = "\n".join(f"  {k.incarnation}: {k.label}: {k.detail}" for k in self.kills)
        return f"seed={self.seed} (SIGKILL_SEED to replay)\nkills:\n{kills}"


@contextlib.contextmanager
def incarnation(scenario: Scenario, number: int, mode: str) -> Iterator[Incarnation]:
    proc = Incarnation(APP_SCRIPT, scenario.tmp, number, mode)
    try:
        yield proc
    finally:
        proc.cleanup()
        scenario.logs.append(proc.output())


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
        assert time.monotonic() < deadline, f"{label}: no kill point within {TRIGGER_TIMEOUT}s"
        lines += scenario.effects.poll(proc.number)
        detail = trigger(lines, scenario.db)
        if detail is None:
            time.sleep(POLL)
    proc.sigkill()
    scenario.effects.drain(proc.number)
    kill = Kill(label, proc.number, detail, read_recorded(scenario.db))
    scenario.kills.append(kill)
    scenario.timings.append(f"{label}: {time.monotonic() - started:.2f}s")
    return kill


def test_sigkill_at_many_points_loses_nothing_and_reruns_nothing(tmp_path: pathlib.Path) -> None:
    seed = int(os.environ.get("SIGKILL_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    scenario = Scenario(tmp_path, seed, Effects(tmp_path / app.EFFECTS_FILE))
    began = time.monotonic()

    with incarnation(scenario, 0, "start") as proc:
        proc.wait_for_output("sent", 15)
        kill = kill_when(scenario, proc, "during-step", during_step)
    _check_during_step(scenario, kill)

    with incarnation(scenario, 1, "resume") as proc:
        proc.wait_for_output("ready", 15)
        kill = kill_when(scenario, proc, "between-steps", between_steps)
    _check_between_steps(scenario, kill)

    for number, (label, function) in enumerate(
        (("async-parallel", "par"), ("sync-parallel", "mixed")), start=2
    ):
        with incarnation(scenario, number, "resume") as proc:
            proc.wait_for_output("ready", 15)
            kill = kill_when(scenario, proc, label, _parallel(function))
        _check_parallel(scenario, kill, function)

    for i in range(RANDOM_KILLS):
        number = 4 + i
        with incarnation(scenario, number, "resume") as proc:
            proc.wait_for_output("ready", 15)
            # At most 0.75 s: the warm-up of the last run of each function alone takes
            # 0.95 s, so the app cannot finish before a random kill.
            delay = rng.uniform(0.0, 0.75)
            kill_when(scenario, proc, f"random-{i}", random_moment(delay))

    last = 4 + RANDOM_KILLS
    with incarnation(scenario, last, "resume") as proc:
        started = time.monotonic()
        code = proc.finish(FINAL_TIMEOUT)
        assert code == 0, f"the last incarnation exited {code}\n{proc.output()}"
        scenario.effects.drain(last)
        scenario.timings.append(f"to completion: {time.monotonic() - started:.2f}s")

    _check_final(scenario, last)
    print(
        f"\nsigkill: seed {seed}, total {time.monotonic() - began:.1f}s; "
        + ", ".join(scenario.timings)
    )
    print(scenario.context())


# -- checks ------------------------------------------------------------------------------


def _executions(lines: list[Line], key: StepKey) -> list[Line]:
    return [ln for ln in lines if (ln.run_key, ln.step) == key]


def _check_during_step(scenario: Scenario, kill: Kill) -> None:
    """The kill landed inside s2: it started, never ended and is not recorded."""
    lines = [ln for ln in scenario.effects.lines if ln.incarnation == kill.incarnation]
    flying = [key for key in in_flight(lines) if key[0].startswith("seq-") and key[1] == "s2"]
    assert flying, f"during-step: no seq s2 left unfinished by the kill ({kill.detail})"
    for key in flying:
        assert key not in kill.recorded, f"{key} recorded though its handler never ended"


def _check_between_steps(scenario: Scenario, kill: Kill) -> None:
    """A run was killed with s3 recorded, inside its durable nap (s4 not started)."""
    lines = [ln for ln in scenario.effects.lines if ln.incarnation == kill.incarnation]
    resting = [
        rk
        for rk in {ln.run_key for ln in lines if ln.step == "s3" and ln.what == "end"}
        if (rk, "s3") in kill.recorded
        and (rk, "nap") not in kill.recorded
        and not _executions(lines, (rk, "s4"))
    ]
    assert resting, f"between-steps: no seq run was resting in its nap ({kill.detail})"


def _check_parallel(scenario: Scenario, kill: Kill, function: str) -> None:
    branch = app.BRANCH_STEPS[function]
    lines = [ln for ln in scenario.effects.lines if ln.incarnation == kill.incarnation]
    flying = in_flight(lines)
    hit = False
    for run_key in {rk for rk, _ in flying if rk.startswith(function + "-")}:
        running = [s for s in branch if (run_key, s) in flying]
        done = [s for s in branch if (run_key, s) in kill.recorded]
        for step in running:
            assert (run_key, step) not in kill.recorded, (
                f"{run_key}/{step} was running at the kill although recorded: re-executed "
                f"after its result was recorded, or recorded before its handler ended"
            )
        hit = hit or (len(running) >= 2 and bool(done))
    assert hit, f"{kill.label}: the kill did not land inside a group ({kill.detail})"


def _check_final(scenario: Scenario, last: int) -> None:
    context = scenario.context()
    with contextlib.closing(
        sqlite3.connect(f"file:{scenario.db}?mode=ro", uri=True, timeout=5)
    ) as conn:
        runs = conn.execute("SELECT function_id, events, status, output FROM runs").fetchall()
        events = conn.execute("SELECT count(*) FROM events WHERE name = ?", (app.EVENT,)).fetchone()
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()
        pending = conn.execute("SELECT count(*) FROM pending").fetchone()
    assert events == (app.RUNS_PER_FUNCTION,), f"events recorded: {events}"
    assert jobs == (0,), f"jobs left in the queue: {jobs}"
    assert pending == (0,), f"parallel members left pending: {pending}"

    # Runs: one per function per event, all completed with the expected output.
    outputs: dict[str, object] = {}
    for function_id, events_json, status, output in runs:
        run_key = _run_key(function_id, events_json)
        assert run_key not in outputs, f"run {run_key} duplicated\n{context}"
        assert status == "Completed", f"run {run_key} is {status}\n{context}"
        outputs[run_key] = json.loads(output)
    expected_runs = {
        app.run_key(fn, k): app.expected_output(fn, k)
        for fn in app.FUNCTIONS
        for k in range(app.RUNS_PER_FUNCTION)
    }
    assert outputs == expected_runs, context

    done = json.loads((scenario.tmp / app.DONE_FILE).read_text())
    assert len(done) == len(expected_runs)
    assert all(r["status"] == "Completed" for r in done), done

    # Steps: every step of every run recorded, nothing else.
    final = read_recorded(scenario.db)
    expected_steps = {
        (app.run_key(fn, k), step)
        for fn in app.FUNCTIONS
        for k in range(app.RUNS_PER_FUNCTION)
        for step in app.STEPS[fn] + app.SLEEPS[fn]
    }
    assert set(final) == expected_steps, context
    all_lines = scenario.effects.lines
    assert {(ln.run_key, ln.step) for ln in all_lines} <= expected_steps

    killed_at = {kill.incarnation: kill for kill in scenario.kills}
    lost: list[str] = []
    for key, rec in sorted(final.items()):
        execs = _executions(all_lines, key)
        if rec.nonce is None:
            assert rec.op == "Sleep", f"{key}: {rec}"
            assert not execs, f"{key}: a durable sleep has no handler: {execs}"
            continue
        starts = [ln for ln in execs if ln.what == "start"]
        ends = [ln for ln in execs if ln.what == "end"]
        # Nonces are unique per execution: one start each, at most one end each.
        assert len({ln.nonce for ln in starts}) == len(starts), f"{key}: {execs}"
        assert len({ln.nonce for ln in ends}) == len(ends), f"{key}: {execs}"
        assert {ln.nonce for ln in ends} <= {ln.nonce for ln in starts}, f"{key}: {execs}"
        # At most one execution per incarnation (our handlers never fail).
        per_incarnation = [ln.incarnation for ln in starts]
        assert len(set(per_incarnation)) == len(per_incarnation), (
            f"{key} ran twice in one process: {execs}\n{context}"
        )
        # The recorded memo is that of an execution that started and ended.
        kept = [ln for ln in ends if ln.nonce == rec.nonce]
        assert kept, f"{key}: recorded nonce {rec.nonce} matches no execution: {execs}\n{context}"
        kept_in = kept[0].incarnation
        lost_here = 0
        # Every other execution came before the kept one, in a process killed before the
        # step was recorded.
        for ln in starts:
            if ln.nonce == rec.nonce:
                continue
            assert ln.incarnation < kept_in, (
                f"{key}: handler ran again after the recorded execution: {execs}\n{context}"
            )
            kill = killed_at.get(ln.incarnation)
            assert kill is not None, f"{key}: ran twice in the last incarnation: {execs}"
            assert key not in kill.recorded, (
                f"{key}: re-executed though recorded before the kill: {execs}\n{context}"
            )
            if any(e.nonce == ln.nonce for e in ends):
                lost_here += 1
                lost.append(f"{key[0]}/{key[1]} in incarnation {ln.incarnation}")
        # Every kill snapshot that holds the step holds the same, final memo.
        for kill in scenario.kills:
            snap = kill.recorded.get(key)
            if snap is not None:
                assert snap == rec, f"{key}: memo changed after kill {kill.label}\n{context}"
                assert kept_in <= kill.incarnation
                # Recorded at a kill: its handler ended exactly once, lost results aside.
                assert len(ends) - lost_here == 1, f"{key}: {execs}\n{context}"
    print(f"\nlost results (ended, killed before commit, re-run): {lost or 'none'}")

    # The engine logged no errors in any incarnation.
    for number, log in enumerate(scenario.logs):
        assert "Traceback" not in log, f"incarnation {number}:\n{log}"
        assert "ERROR" not in log, f"incarnation {number}:\n{log}"
    assert last == len(scenario.kills)
