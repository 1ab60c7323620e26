"""SIGKILL the server, then the app, over real HTTP, and check that nothing is lost or re-run.

``mainspring dev -u APP`` calls our SDK's ASGI serve handler on uvicorn
(``sigkill_http_app.py``): a function of 40 sequential lone steps (which the engine's step
chains bundle several to a call) and a function with a parallel group of 10 steps then two
sequential ones. Every execution of a step handler appends ``"<run id> <step> <nonce>"`` to
a side-effect log before it sleeps a few ms and returns the nonce, a fresh uuid per execution,
so the memo the server recorded names the one execution it kept, and the log's order is the
order in which executions started.

The scenario runs twice, so that each process is killed once inside the chains and once
inside a parallel group, on every run of the suite: the server inside the chains and the
app inside a group, then the other way round. How far in is drawn from a seed (printed;
``SIGKILL_HTTP_SEED`` replays the draw, not the timing):

1. wave A (3 events, 6 runs); SIGKILL the server once the log shows a chosen number of this
   wave's chain steps ("chains"), or of a fan run's group steps with no step after the
   group yet ("group"); restart it on the same database and port;
2. wave B (3 more events); SIGKILL the app the same way, restart it on the same port;
3. wait until every run has finished.

The durability promise, checked from the outside:

* no run is dropped: every accepted event has its two runs, and every run is Completed;
* no completed step is lost: every step of every run is in the run's history (read through
  ``GET /v0/runs/{id}/actions`` and, cross-checked, the GraphQL trace and its outputs), the
  run's output is the recorded nonces, and the recorded nonce is that of an execution of
  that step in the side-effect log;
* no recorded step is re-executed: the recorded nonce's line is the *last* line of that run
  and step in the log. Re-execution is allowed only for executions that were never
  recorded: a step that ran in a call whose answer was lost (the app was killed while
  running it, or the server was killed before it committed the call's answer, which for a
  chain covers every step of the chain) runs again, and only the later execution can be
  recorded, since the server issues the new call only after it gave up on the old one (a
  new server process, or a failed call to a dead app). The one loophole is an orphan: an
  app call whose server died keeps running for at most one chain budget (20 ms); the
  restarted server needs about a second before it calls again, so an orphan's steps start
  long before the new execution's, and any execution after the recorded one is a bug;
* no result is lost after the function used it: a step's recorded execution started after
  the recorded executions of the steps the function awaited before it (``c07`` after
  ``c06``; ``a0`` after every group step). "Last line" alone misses this case: a kept
  execution that went on from results the server never recorded (an answer lost to a
  kill), whose earlier steps are later re-run and recorded after the later ones;
* the same, sharper, at each kill: the steps recorded when the server died (read from its
  database once it is dead) and when the app died (read through the API while the app is
  down) have no execution in the log after the kill (for the server kill this holds even
  for orphans, since no server was alive to commit what they ran), and those memos never
  change afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import httpx
import pytest

from mainspring.protocol.step_ids import hash_step_id
from tests.e2e import sigkill_http_app as app
from tests.e2e.support import FINISHED, free_port, wait_until_up

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUNCTION_PREFIX = app.APP_ID + "-"
EVENTS_PER_WAVE = 3
RUNS_PER_EVENT = len(app.STEPS)
TRIGGER_TIMEOUT = 10.0
FINAL_TIMEOUT = 20.0
POLL = 0.001
#: Outputs fetched by one GraphQL query (the server limits the aliases of a query).
ALIASES_PER_QUERY = 20
#: The trace's name for a failed call's attempt, not a step (see ``graphql/trace.py``).
FUNCTION_ERROR = "Function error"

StepKey = tuple[str, str]  # (run id, step user id)


@dataclasses.dataclass(frozen=True)
class Line:
    run_id: str
    step: str
    nonce: str
    offset: int  # where the line starts in the log


class Effects:
    """Reads the side-effect log incrementally, one complete line at a time."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.lines: list[Line] = []
        self.offset = 0

    def poll(self) -> list[Line]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        new: list[Line] = []
        at = self.offset
        for raw in chunk[:end].splitlines(keepends=True):
            parts = raw.decode().split()
            assert len(parts) == 3, f"bad line {raw!r}"
            new.append(Line(parts[0], parts[1], parts[2], at))
            at += len(raw)
        self.offset += end
        self.lines.extend(new)
        return new

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


class Process:
    """A subprocess whose stdout and stderr go to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: pathlib.Path):
        self.name = name
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sigkill(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited early:\n{self.output()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@dataclasses.dataclass
class Cluster:
    tmp: pathlib.Path
    server_port: int = dataclasses.field(default_factory=free_port)
    app_port: int = dataclasses.field(default_factory=free_port)
    processes: list[Process] = dataclasses.field(default_factory=list)

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}/api/inngest"

    @property
    def db(self) -> pathlib.Path:
        return self.tmp / "dev.db"

    @property
    def effects_path(self) -> pathlib.Path:
        return self.tmp / "effects.log"

    def start_server(self) -> Process:
        args = [sys.executable, "-m", "mainspring.cli", "dev", "-u", self.app_url]
        args += ["--port", str(self.server_port), "--db", str(self.db), "--retry-backoff", "0.2"]
        n = sum(p.name.startswith("server") for p in self.processes)
        proc = Process(f"server-{n}", args, dict(os.environ), self.tmp / f"server-{n}.log")
        self.processes.append(proc)
        wait_until_up(f"{self.server}/health", proc.proc)
        return proc

    def start_app(self) -> Process:
        env = {
            **os.environ,
            "MAINSPRING_DEV": "1",
            "MAINSPRING_API_BASE_URL": self.server,
            app.EFFECTS_ENV: str(self.effects_path),
        }
        args = [sys.executable, "-m", "uvicorn", "tests.e2e.sigkill_http_app:app"]
        args += ["--port", str(self.app_port), "--log-level", "warning"]
        n = sum(p.name.startswith("app") for p in self.processes)
        proc = Process(f"app-{n}", args, env, self.tmp / f"app-{n}.log")
        self.processes.append(proc)
        wait_until_up(self.app_url, proc.proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.processes)

    # -- the server's API ----------------------------------------------------------------

    def wait_synced(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            answer = httpx.get(f"{self.server}/v1/apps/{app.APP_ID}/functions", timeout=5)
            if answer.status_code == 200 and len(answer.json()["data"]["functions"]) == 2:
                return
            assert time.monotonic() < deadline, f"the app never synced: {answer.text}"
            time.sleep(0.05)

    def send(self, k: int) -> str:
        answer = httpx.post(
            f"{self.server}/e/key", json={"name": app.EVENT, "data": {"k": k}}, timeout=5
        )
        assert answer.status_code == 200, answer.text
        [event_id] = answer.json()["ids"]
        assert isinstance(event_id, str)
        return event_id

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.server}/v1/events/{event_id}/runs", timeout=5)
        assert answer.status_code == 200, answer.text
        runs: list[dict[str, Any]] = answer.json()["data"]
        return runs

    def run_functions(self, event_ids: list[str], timeout: float = 10.0) -> dict[str, str]:
        """Run id -> function (``chain`` or ``fan``) for the events' runs, once all exist."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [run for event_id in event_ids for run in self.runs(event_id)]
            if len(runs) == RUNS_PER_EVENT * len(event_ids):
                return {r["run_id"]: function_of(r) for r in runs}
            assert time.monotonic() < deadline, f"runs missing: {runs}"
            time.sleep(0.005)

    def actions(self, run_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.server}/v0/runs/{run_id}/actions", timeout=10)
        assert answer.status_code == 200, answer.text
        memos: dict[str, Any] = answer.json()
        return memos

    def gql(self, query: str, **variables: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.server}/v0/gql", json={"query": query, "variables": variables}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


def function_of(run: dict[str, Any]) -> str:
    function_id = str(run["function_id"])
    assert function_id.startswith(FUNCTION_PREFIX), function_id
    return function_id[len(FUNCTION_PREFIX) :]


def recorded_nonces(
    functions: dict[str, str], memos_of: Callable[[str], dict[str, Any]]
) -> dict[StepKey, str]:
    """Every recorded step of these runs -> its nonce, from a run id -> memo map reader."""
    recorded: dict[StepKey, str] = {}
    for run_id, function in functions.items():
        memos = memos_of(run_id)
        by_hash = {hash_step_id(step): step for step in app.STEPS[function]}
        assert set(memos) <= set(by_hash), f"{run_id}: unknown steps {set(memos) - set(by_hash)}"
        for step_hash, memo in memos.items():
            assert set(memo) == {"data"}, f"{run_id}/{by_hash[step_hash]}: {memo}"
            recorded[(run_id, by_hash[step_hash])] = str(memo["data"])
    return recorded


def db_memos(db: pathlib.Path) -> Callable[[str], dict[str, Any]]:
    """A memo map reader on the (dead) server's database, read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT run_id, step_id, memo FROM steps").fetchall()
    by_run: dict[str, dict[str, Any]] = {}
    for run_id, step_id, memo in rows:
        by_run.setdefault(str(run_id), {})[str(step_id)] = json.loads(memo)
    return lambda run_id: by_run.get(run_id, {})


# -- kill moments ---------------------------------------------------------------------------


@dataclasses.dataclass
class Kill:
    label: str
    detail: str = ""
    #: The log's size right after the process died: later lines ran after the kill.
    offset: int = 0
    recorded: dict[StepKey, str] = dataclasses.field(default_factory=dict)


Trigger = Callable[[list[Line]], str | None]


#: Where a kill lands: inside the wave's step chains, or inside one of its parallel groups.
KILL_POINTS = ("chains", "group")


def draw_trigger(rng: random.Random, old_runs: set[str], where: str) -> tuple[str, Trigger]:
    """A kill moment for a wave (the runs not in ``old_runs``): inside its chains, or
    inside one of its parallel groups (``where``); how far in is drawn from ``rng``."""
    assert where in KILL_POINTS, where
    if where == "chains":
        total = EVENTS_PER_WAVE * len(app.CHAIN_STEPS)
        target = rng.randrange(3, total * 3 // 4)

        def in_chains(lines: list[Line]) -> str | None:
            done = {
                (ln.run_id, ln.step)
                for ln in lines
                if ln.run_id not in old_runs and ln.step in app.CHAIN_STEPS
            }
            return f"{len(done)} of {total} chain steps ran" if len(done) >= target else None

        return f"chains: after {target} of the wave's chain steps", in_chains
    target = rng.randrange(1, len(app.GROUP_STEPS) + 1)

    def in_group(lines: list[Line]) -> str | None:
        started: dict[str, set[str]] = {}
        for ln in lines:
            if ln.run_id not in old_runs:
                started.setdefault(ln.run_id, set()).add(ln.step)
        past = 0
        for run_id, steps in sorted(started.items()):
            group = steps & set(app.GROUP_STEPS)
            if len(group) >= target and not steps & set(app.AFTER_STEPS):
                return f"{run_id}: group steps {sorted(group)} started, no step after it"
            past += bool(steps & set(app.AFTER_STEPS))
        # Every group of the wave slipped by between two polls: this run would not test a
        # kill inside a group, which is what it is for.
        assert past < EVENTS_PER_WAVE, "every parallel group ended before a kill point"
        return None

    return f"group: after {target} of a fan run's group steps", in_group


def kill_when(effects: Effects, proc: Process, label: str, trigger: Trigger) -> Kill:
    lines: list[Line] = []
    deadline = time.monotonic() + TRIGGER_TIMEOUT
    detail: str | None = None
    while detail is None:
        assert proc.proc.poll() is None, f"{proc.name} exited:\n{proc.output()}"
        assert time.monotonic() < deadline, f"{label}: no kill point in {TRIGGER_TIMEOUT}s"
        lines += effects.poll()
        detail = trigger(lines)
        if detail is None:
            time.sleep(POLL)
    proc.sigkill()
    return Kill(label, detail, effects.size())


# -- the test ---------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(tmp: pathlib.Path) -> Iterator[Cluster]:
    nodes = Cluster(tmp)
    try:
        yield nodes
    finally:
        for proc in nodes.processes:
            proc.stop()


@pytest.mark.parametrize(
    ("server_kill_in", "app_kill_in"),
    [("chains", "group"), ("group", "chains")],
    ids=["server-in-chains-app-in-group", "server-in-group-app-in-chains"],
)
def test_sigkill_server_and_app_over_http_loses_nothing(
    tmp_path: pathlib.Path, server_kill_in: str, app_kill_in: str
) -> None:
    seed = int(os.environ.get("SIGKILL_HTTP_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    began = time.monotonic()
    with cluster(tmp_path) as nodes:
        effects = Effects(nodes.effects_path)
        app_proc = nodes.start_app()
        server = nodes.start_server()
        nodes.wait_synced()

        # Wave A, then the server dies and comes back on the same database and port.
        label, trigger = draw_trigger(rng, set(), server_kill_in)
        events = [nodes.send(k) for k in range(EVENTS_PER_WAVE)]
        server_kill = kill_when(effects, server, f"server: {label}", trigger)
        at_kill = db_memos(nodes.db)
        killed_server_at = time.monotonic()
        server = nodes.start_server()
        nodes.wait_synced()
        restarted_server = time.monotonic() - killed_server_at
        wave = nodes.run_functions(events)
        server_kill.recorded = recorded_nonces(wave, at_kill)

        # Wave B, then the app dies and comes back on the same port.
        label, trigger = draw_trigger(rng, set(wave), app_kill_in)
        more = [nodes.send(k) for k in range(EVENTS_PER_WAVE, 2 * EVENTS_PER_WAVE)]
        app_kill = kill_when(effects, app_proc, f"app: {label}", trigger)
        events += more
        functions = nodes.run_functions(events)
        # The app is dead: whatever the server holds now was run by it, before the kill.
        app_kill.recorded = recorded_nonces(functions, nodes.actions)
        killed_app_at = time.monotonic()
        app_proc = nodes.start_app()
        restarted_app = time.monotonic() - killed_app_at

        runs = wait_finished(nodes, events, began)
        finished = time.monotonic() - began
        effects.poll()
        assert effects.size() == effects.offset, "a torn line in the side-effect log"
        kills = [server_kill, app_kill]
        context = f"seed={seed} (SIGKILL_HTTP_SEED to replay)\n" + "\n".join(
            f"{k.label}: {k.detail}, log offset {k.offset}" for k in kills
        )
        problems, reruns = check(nodes, runs, functions, effects.lines, kills)
        shown = "\n".join(problems[:30]) + (
            f"\n... {len(problems) - 30} more" if problems[30:] else ""
        )
        assert not problems, f"{len(problems)} violations:\n{shown}\n{context}\n{nodes.logs()}"
        for proc in nodes.processes:
            assert "Traceback" not in proc.output(), f"{proc.name}:\n{proc.output()}"
    print(
        f"\nsigkill-http: {context}\nserver back in {restarted_server:.2f}s, app back in "
        f"{restarted_app:.2f}s, all runs finished after {finished:.2f}s, total "
        f"{time.monotonic() - began:.2f}s\nre-executed (never recorded, re-run): "
        f"{reruns or 'none'}"
    )


def wait_finished(nodes: Cluster, events: list[str], began: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + FINAL_TIMEOUT
    while True:
        runs = [run for event_id in events for run in nodes.runs(event_id)]
        if len(runs) == RUNS_PER_EVENT * len(events) and all(r["status"] in FINISHED for r in runs):
            return runs
        assert time.monotonic() < deadline, (
            f"runs not finished after {time.monotonic() - began:.1f}s: "
            f"{[(r['run_id'], r['status']) for r in runs]}\n{nodes.logs()}"
        )
        time.sleep(0.05)


# -- checks -------------------------------------------------------------------------------------


def check(
    nodes: Cluster,
    runs: list[dict[str, Any]],
    functions: dict[str, str],
    lines: list[Line],
    kills: list[Kill],
) -> tuple[list[str], list[str]]:
    """Check the promise (see the module docstring): the violations found, and the
    re-executions seen (legitimate ones), described. A violation does not stop the checks,
    so that a dropped run does not hide a re-executed step."""
    problems: list[str] = []
    # No run dropped: two per event (one per function), each Completed.
    assert {r["run_id"]: function_of(r) for r in runs} == functions
    completed: set[str] = set()
    for run in runs:
        detail = httpx.get(f"{nodes.server}/v1/runs/{run['run_id']}", timeout=5).json()["data"]
        if run["status"] == detail["status"] == "Completed":
            completed.add(run["run_id"])
        else:
            problems.append(f"run not completed: {detail}")

    # No step lost: every step recorded; the output is the recorded nonces.
    recorded = recorded_nonces(functions, nodes.actions)
    for run in runs:
        run_id, function = run["run_id"], function_of(run)
        if run_id not in completed:
            continue
        steps = app.STEPS[function]
        missing = [s for s in steps if (run_id, s) not in recorded]
        if missing:
            problems.append(f"{run_id} ({function}): steps not recorded: {missing}")
        elif run["output"] != [recorded[(run_id, s)] for s in steps]:
            problems.append(f"{run_id}: the output is not the recorded nonces: {run}")
        problems += check_trace(nodes, run_id, function, recorded)

    # The log: each nonce is one execution; every line is a step of a known run.
    executions: dict[StepKey, list[Line]] = {}
    for line in lines:
        assert line.run_id in functions, f"an execution in an unknown run: {line}"
        assert line.step in app.STEPS[functions[line.run_id]], f"an unknown step: {line}"
        executions.setdefault((line.run_id, line.step), []).append(line)
    nonces = [line.nonce for line in lines]
    assert len(set(nonces)) == len(nonces), "a nonce logged twice"

    reruns: list[str] = []
    kept_at: dict[StepKey, int] = {}  # where the recorded execution's line is
    for key, execs in sorted(executions.items()):
        nonce = recorded.get(key)
        shown = f"{key[0]}/{key[1]} ({functions[key[0]]}): recorded {nonce}, executions " + str(
            [f"{ln.nonce} at {ln.offset} ({phase(ln, kills)})" for ln in execs]
        )
        if len(execs) > 1:
            when = ", ".join(phase(ln, kills) for ln in execs)
            reruns.append(f"{key[1]} of a {functions[key[0]]} run x{len(execs)} ({when})")
        if nonce is None:
            if key[0] in completed:  # (a failed run may stop with steps unrecorded)
                problems.append(f"executed, never recorded, in a completed run: {shown}")
            continue
        kept = [ln for ln in execs if ln.nonce == nonce]
        kept_at[key] = kept[0].offset if kept else -1
        if not kept:
            problems.append(f"the recorded nonce is no execution of the step: {shown}")
        elif execs[-1].nonce != nonce:
            problems.append(f"re-executed after the recorded execution: {shown}")
        for kill in kills:
            if key not in kill.recorded:
                continue
            if kill.recorded[key] != nonce:
                problems.append(f"memo changed after the {kill.label} kill: {shown}")
            if any(ln.offset >= kill.offset for ln in execs):
                problems.append(f"recorded at the {kill.label} kill, executed after it: {shown}")
    for key in recorded.keys() - executions.keys():
        problems.append(f"recorded without any execution: {key}: {recorded[key]}")
    problems += check_causality(functions, completed, kept_at)
    return problems, reruns


def check_causality(
    functions: dict[str, str], completed: set[str], kept_at: dict[StepKey, int]
) -> list[str]:
    """A step's recorded execution started after the recorded executions of the steps the
    function awaited before it: its result was computed from recorded results only. (Were
    it not, the function went on with a result that was then lost, and ran again.)"""
    problems: list[str] = []
    for run_id, function in functions.items():
        if run_id not in completed:
            continue  # (reported already; a failed run may stop with steps unrecorded)
        if function == "chain":
            before = [[step] for step in app.CHAIN_STEPS]
        else:
            before = [list(app.GROUP_STEPS), *([step] for step in app.AFTER_STEPS)]
        for earlier, later in itertools.pairwise(before):
            late = [(s, kept_at.get((run_id, s), -1)) for s in later]
            early = [(s, kept_at.get((run_id, s), -1)) for s in earlier]
            if any(at < 0 for _, at in early + late):
                continue  # a step not recorded: reported already
            if min(at for _, at in late) < max(at for _, at in early):
                problems.append(
                    f"{run_id} ({function}): {later} recorded from an execution that started "
                    f"before the recorded execution of {earlier} (log offsets: {early} {late})"
                )
    return problems


def phase(line: Line, kills: list[Kill]) -> str:
    """Which kill a line came before (or ``last`` after both)."""
    for kill in kills:
        if line.offset < kill.offset:
            return f"before the {kill.label.split(':')[0]} kill"
    return "last"


def check_trace(
    nodes: Cluster, run_id: str, function: str, recorded: dict[StepKey, str]
) -> list[str]:
    """The GraphQL trace shows the same history: one span per step, the same outputs."""
    run = nodes.gql(
        "query($id: String!) { run(runID: $id) { status trace { childrenSpans "
        "{ name outputID } } } }",
        id=run_id,
    )["run"]
    # A call that failed (the app was down or died) shows as a "Function error" span.
    spans = [span for span in run["trace"]["childrenSpans"] if span["name"] != FUNCTION_ERROR]
    names = [span["name"] for span in spans]
    steps = app.STEPS[function]
    in_order = names == list(steps) if function == "chain" else sorted(names) == sorted(steps)
    if run["status"] != "COMPLETED" or not in_order:
        return [f"{run_id}: the GraphQL trace shows {run['status']}, steps {names}"]
    outputs: dict[str, Any] = {}
    for first in range(0, len(spans), ALIASES_PER_QUERY):  # the server caps aliases per query
        aliases = " ".join(
            f'o{i}: runTraceSpanOutputByID(outputID: "{span["outputID"]}") {{ data }}'
            for i, span in enumerate(spans)
            if first <= i < first + ALIASES_PER_QUERY
        )
        outputs.update(nodes.gql(f"query {{ {aliases} }}"))
    return [
        f"{run_id}/{span['name']}: the GraphQL output is {outputs[f'o{i}']['data']}"
        for i, span in enumerate(spans)
        if json.loads(outputs[f"o{i}"]["data"]) != recorded[(run_id, span["name"])]
    ]
