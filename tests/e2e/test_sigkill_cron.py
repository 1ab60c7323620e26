"""SIGKILL an engine around cron ticks: each tick fires exactly once.

``cron_sigkill_app.py`` runs a function with a ``* * * * *`` trigger on a clock sixty times
faster than the wall clock (a tick a second), shared by every process on the database. Each
tick's run has one step whose handler logs its start and end with a nonce. The engine is
killed three times, then stopped cleanly:

1. while a tick's step is in flight (its start logged, not its end);
2. at a tick's due time, a few milliseconds either side (drawn from a seed, printed;
   ``SIGKILL_CRON_SEED`` replays the draw, not the timing): before or after the unit that
   fires the tick commits;
3. right after a tick's step ended, before or after its answer is recorded;
4. then a last incarnation runs three more ticks and stops.

What must hold, read from the database once the last process is gone:

* every tick fired once: one ``inngest/scheduled.timer`` event and one run per scheduled
  minute, every run Completed, its output naming its tick and the recorded step's nonce;
* no tick is skipped while an engine is up: between two fired ticks, the minutes skipped
  all fall while no engine ran (and the first missed one fires once on the restart: the
  cron job keeps its tick);
* no recorded step ran again (``sigkill_support.check_executions``): an execution other
  than the recorded one ran only in a process killed before the step was recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import pathlib
import random
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import cron_sigkill_app as app
from tests.e2e.sigkill_support import (
    Effects,
    Incarnation,
    KillPoint,
    Line,
    Recorded,
    StepKey,
    check_executions,
    in_flight,
)

pytestmark = pytest.mark.slow

APP_SCRIPT = pathlib.Path(app.__file__)
MINUTE = 60_000
#: 2026-01-01T00:00:30Z: the timeline starts thirty seconds into a minute.
START_VIRTUAL = 1_767_225_630_000
#: Startup can take a few seconds of wall clock on a loaded machine.
READY_TIMEOUT = 30.0
TRIGGER_TIMEOUT = 15.0
#: A tick due this long (wall clock) before a kill has had time to fire.
FIRE_MARGIN_MS = 300


def iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> int:
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@dataclasses.dataclass
class Timeline:
    """The shared fast clock, seen from the test."""

    real_ms: int
    virtual_ms: int

    def now(self) -> int:
        return self.virtual_ms + int((time.time() * 1000 - self.real_ms) * app.SPEED)

    def wall_of(self, virtual: int) -> float:
        """The wall-clock time (epoch seconds) at which the timeline reaches ``virtual``."""
        return (self.real_ms + (virtual - self.virtual_ms) / app.SPEED) / 1000


@dataclasses.dataclass
class Snapshot:
    runs: dict[str, list[tuple[str, str, Any]]]  # tick -> [(run id, status, output)]
    events: dict[str, list[int]]  # timer event id (the tick) -> when each row says it fired
    steps: dict[StepKey, Recorded]


def snapshot(db: pathlib.Path) -> Snapshot:
    """The database of a dead engine, read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        run_rows = conn.execute(
            "SELECT run_id, function_id, events, status, output FROM runs"
        ).fetchall()
        step_rows = conn.execute(
            "SELECT run_id, user_id, op, memo, started_at, ended_at FROM steps"
        ).fetchall()
        event_rows = conn.execute(
            "SELECT id, data FROM events WHERE name = 'inngest/scheduled.timer'"
        ).fetchall()
    runs: dict[str, list[tuple[str, str, Any]]] = {}
    tick_of: dict[str, str] = {}
    for run_id, function_id, events_json, status, output in run_rows:
        assert function_id == app.FUNCTION_ID, function_id
        [event] = json.loads(events_json)
        tick = str(event["data"]["scheduledAt"])
        parsed = None if output is None else json.loads(output)
        runs.setdefault(tick, []).append((str(run_id), str(status), parsed))
        tick_of[str(run_id)] = tick
    steps: dict[StepKey, Recorded] = {}
    for run_id, user_id, op, memo, started_at, ended_at in step_rows:
        memo_json: Any = None if memo is None else json.loads(memo)
        nonce = str(memo_json["data"]) if op == "StepRun" else None
        key = (tick_of[str(run_id)], str(user_id))
        steps[key] = Recorded(str(op), memo_json, nonce, started_at, int(ended_at))
    events: dict[str, list[int]] = {}
    for event_id, data in event_rows:
        events.setdefault(str(event_id), []).append(parse_iso(json.loads(data)["fireAt"]))
    return Snapshot(runs, events, steps)


@dataclasses.dataclass
class Kill:
    label: str
    incarnation: int
    at: int  # virtual time of the kill
    snap: Snapshot


@dataclasses.dataclass
class Scenario:
    tmp: pathlib.Path
    timeline: Timeline
    effects: Effects
    #: (virtual time an engine was seen ready, virtual time it died or stopped)
    up: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    kills: list[Kill] = dataclasses.field(default_factory=list)
    procs: list[Incarnation] = dataclasses.field(default_factory=list)

    @property
    def db(self) -> pathlib.Path:
        return self.tmp / "engine.db"

    def start(self) -> Incarnation:
        proc = Incarnation(APP_SCRIPT, self.tmp, len(self.procs), "run")
        self.procs.append(proc)
        proc.wait_for_output("ready", READY_TIMEOUT)
        self.up.append((self.timeline.now(), -1))
        return proc

    def lines_of(self, proc: Incarnation) -> list[Line]:
        self.effects.poll(proc.number)
        return [ln for ln in self.effects.lines if ln.incarnation == proc.number]

    def kill(self, proc: Incarnation, label: str) -> None:
        proc.sigkill()
        at = self.timeline.now()
        self.effects.drain(proc.number)
        self.up[-1] = (self.up[-1][0], at)
        self.kills.append(Kill(label, proc.number, at, snapshot(self.db)))

    def context(self) -> str:
        kills = "; ".join(
            f"{k.label} at {iso(k.at)} (incarnation {k.incarnation})" for k in self.kills
        )
        up = ", ".join(f"{iso(a)}..{iso(b)}" for a, b in self.up)
        logs = "\n".join(f"--- app-{p.number}\n{p.output()[-2000:]}" for p in self.procs)
        return f"kills: {kills}\nup: {up}\n{logs}"


@contextlib.contextmanager
def scenario(tmp: pathlib.Path) -> Iterator[Scenario]:
    timeline = Timeline(int(time.time() * 1000), START_VIRTUAL)
    (tmp / app.CLOCK_FILE).write_text(
        json.dumps({"real_ms": timeline.real_ms, "virtual_ms": timeline.virtual_ms})
    )
    scene = Scenario(tmp, timeline, Effects(tmp / app.EFFECTS_FILE))
    try:
        yield scene
    finally:
        for proc in scene.procs:
            proc.cleanup()


def test_sigkill_around_cron_ticks_fires_each_tick_once(tmp_path: pathlib.Path) -> None:
    seed = int(os.environ.get("SIGKILL_CRON_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    offset_ms = rng.choice([-10, -5, -2, 0, 1, 2, 5, 10])
    with scenario(tmp_path) as scene:
        # 1. A tick's step in flight.
        proc = scene.start()
        proc.wait_until(
            "a step in flight",
            lambda: bool(in_flight(scene.lines_of(proc))),
            TRIGGER_TIMEOUT,
        )
        scene.kill(proc, "step in flight")

        # 2. At a tick's due time, give or take a few milliseconds.
        proc = scene.start()
        due = (scene.timeline.now() // MINUTE + 1) * MINUTE
        if scene.timeline.wall_of(due) - time.time() < 0.3:
            due += MINUTE  # time enough to aim
        time.sleep(max(0.0, scene.timeline.wall_of(due) + offset_ms / 1000 - time.time()))
        scene.kill(proc, f"tick {iso(due)} due {offset_ms:+d} ms")

        # 3. Right after a tick's step ended.
        proc = scene.start()
        proc.wait_until(
            "a step to end",
            lambda: any(ln.what == "end" for ln in scene.lines_of(proc)),
            TRIGGER_TIMEOUT,
        )
        scene.kill(proc, "step ended")

        # 4. Three more ticks, then a clean stop.
        proc = scene.start()
        proc.wait_until(
            "three more ticks",
            lambda: len({ln.run_key for ln in scene.lines_of(proc) if ln.what == "end"}) >= 3,
            TRIGGER_TIMEOUT,
        )
        (tmp_path / app.STOP_FILE).write_text("")
        assert proc.finish(timeout=20) == 0, proc.output()
        scene.up[-1] = (scene.up[-1][0], scene.timeline.now())
        scene.effects.drain(proc.number)
        final = snapshot(scene.db)
        context = f"seed={seed} (SIGKILL_CRON_SEED to replay)\n{scene.context()}"
        check(scene, final, context)
    print(f"\nsigkill-cron: {len(final.runs)} ticks, {context.splitlines()[1]}")


def check(scene: Scenario, final: Snapshot, context: str) -> None:
    ticks = sorted(final.runs)
    assert len(ticks) >= 4, f"ticks: {ticks}\n{context}"
    # Every tick fired once: one event, one run, Completed with its own tick and nonce.
    for tick in ticks:
        assert len(final.events.get(tick, [])) == 1, f"{tick}: {final.events}\n{context}"
        [(run_id, status, output)] = final.runs[tick]
        assert status == "Completed", f"{tick}: run {run_id} is {status}\n{context}"
        recorded = final.steps[(tick, "work")]
        assert output == {"tick": tick, "nonce": recorded.nonce}, f"{tick}: {output}\n{context}"
    assert set(final.events) == set(ticks), f"events {sorted(final.events)}\n{context}"
    # No tick skipped while an engine ran: a minute missing between two fired ticks fell
    # while every engine was down (between a kill and the next start).
    margin = FIRE_MARGIN_MS * app.SPEED
    stamps = [parse_iso(t) for t in ticks]
    assert all(s % MINUTE == 0 for s in stamps), ticks
    first_up = scene.up[0][0]
    assert stamps[0] <= (first_up // MINUTE + 1) * MINUTE + margin, f"{ticks}\n{context}"
    downs = [(scene.up[i][1] - margin, scene.up[i + 1][0]) for i in range(len(scene.up) - 1)]
    for earlier, later in itertools.pairwise(stamps):
        for missing in range(earlier + MINUTE, later, MINUTE):
            assert any(start <= missing <= end for start, end in downs), (
                f"tick {iso(missing)} skipped while an engine ran\n{context}"
            )
        if later > earlier + MINUTE:
            # Ticks are skipped only after the first missed one, which a restart fires late.
            [fired] = final.events[iso(earlier)]
            assert fired - earlier > margin, (
                f"ticks after {iso(earlier)} skipped, though it fired on time: the first "
                f"missed tick did not fire on the restart\n{context}"
            )
    last_up = scene.up[-1]
    assert stamps[-1] >= last_up[1] - MINUTE - margin, f"{ticks}\n{context}"
    # No recorded step ran again.
    kills = [KillPoint(k.label, k.incarnation, k.snap.steps) for k in scene.kills]
    check_executions(scene.effects.lines, final.steps, kills, context)
