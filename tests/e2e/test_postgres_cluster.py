"""Three server processes on one PostgreSQL database, one SIGKILLed and one restarted
midway, then every connection cut by the database: every run completes with the right
output, no recorded step runs again, and a concurrency limit of 1 holds across the whole
cluster (engine/claims.py).

Each process is ``mainspring dev tests.e2e.cluster_app:functions --database URL`` with
short leases, so that the killed process's jobs are taken over within seconds. Events go
to the processes in turn; waits are resumed by events sent to another process than the
one that ran the wait.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.e2e.support import ROOT, free_port, wait_until_up
from tests.postgres_support import TEMPLATES, admin_url

pytestmark = pytest.mark.slow

#: Runs per function kind (7 kinds, the child of each parent included).
PER_KIND = int(os.environ.get("CLUSTER_RUNS_PER_KIND", "25"))
LEASE_SECONDS = 2.0
#: How long after the database cut every connection a process may still start a step
#: whose result the cut then keeps from being recorded: until its next write fails (a
#: failed job goes on a second later, as the store has it).
CUT_NOTICED_MS = 1000


@dataclasses.dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: pathlib.Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, events: list[dict[str, Any]]) -> None:
        answer = httpx.post(f"{self.url}/e/key", json=events, timeout=30)
        assert answer.status_code == 200, answer.text


def start(database: str, tmp: pathlib.Path, number: int) -> Server:
    port = free_port()
    log = tmp / f"server-{number}.log"
    env = {**os.environ, "CLUSTER_EFFECTS": str(tmp)}
    with log.open("wb") as out:  # the child keeps its own copy of the file
        proc = _spawn(database, port, env, out)
    server = Server(port, proc, log)
    wait_until_up(f"{server.url}/health", proc)
    return server


def _spawn(database: str, port: int, env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mainspring.cli",
            "dev",
            "tests.e2e.cluster_app:functions",
            "--database",
            database,
            "--port",
            str(port),
            "--no-poll",
            "--lease-seconds",
            str(LEASE_SECONDS),
            "--retry-backoff",
            "0.2",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def database() -> Iterator[str]:
    with TEMPLATES.clone() as url:
        yield url


@dataclasses.dataclass(frozen=True)
class Execution:
    run: str
    step: str
    nonce: str
    pid: int
    start: int
    end: int | None


def executions(tmp: pathlib.Path, ended: dict[int, int]) -> list[Execution]:
    """Every handler execution the processes logged; one cut short by a kill ends then."""
    starts: dict[str, tuple[str, str, int, int]] = {}
    ends: dict[str, int] = {}
    for path in tmp.glob("effects-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) != 6:
                continue  # torn by the kill
            run, step, what, nonce, pid, at = parts
            if what == "start":
                starts[nonce] = (run, step, int(pid), int(at))
            else:
                ends[nonce] = int(at)
    found = []
    for nonce, (run, step, process, began) in starts.items():
        end = ends.get(nonce, ended.get(process))
        found.append(Execution(run, step, nonce, process, began, end))
    return found


def expected(function: str, key: str) -> Any:
    return {
        "seq": [0, 1, 2],
        "fan": [0, 1, 2, 3],
        "nap": [1, 2],
        "wait": [0, key],
        "child": 7,
        "parent": 8,
        "limited": 5,
    }[function]


def test_three_processes_one_killed_and_one_restarted_complete_every_run(
    database: str, tmp_path: pathlib.Path
) -> None:
    servers = [start(database, tmp_path, n) for n in range(3)]
    stopped_at: dict[int, int] = {}
    cut_at = 0
    try:
        rotation = itertools.cycle(range(3))
        kinds = ["seq", "fan", "nap", "wait", "parent", "limited"]
        keys = [f"{kind}-{i}" for i in range(PER_KIND) for kind in kinds]
        midway = len(keys) // 40 * 20
        later = len(keys) * 3 // 80 * 20
        for chunk_start in range(0, len(keys), 20):
            chunk = keys[chunk_start : chunk_start + 20]
            servers[next(rotation)].send(
                [{"name": f"cluster/{k.split('-')[0]}", "data": {"key": k}} for k in chunk]
            )
            if chunk_start == midway:
                # Midway: one process dies at once, another restarts (drained by SIGTERM).
                victim = servers[1]
                stopped_at[victim.proc.pid] = int(time.time() * 1000)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait(timeout=10)
                restarted = servers[2]
                restarted.proc.send_signal(signal.SIGTERM)
                # Drained: uvicorn shuts down, the engine gives its jobs back, then the
                # signal ends the process (uvicorn raises it again once shut down).
                restarted.proc.wait(timeout=30)
                assert "held jobs given back" in restarted.log.read_text()
                stopped_at[restarted.proc.pid] = int(time.time() * 1000)
                servers[2] = start(database, tmp_path, 3)
                servers[1] = servers[0]  # the dead one's turns go to a live one
            if chunk_start == later:
                # Then the database cuts every connection (as a restart of it would).
                name = database.rsplit("/", 1)[1]
                cut_at = int(time.time() * 1000)
                with psycopg.connect(admin_url(), autocommit=True) as admin:
                    cut = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid != pg_backend_pid()",
                        (name,),
                    ).fetchone()
                assert cut is not None
                assert cut[0] >= 2, cut
        # Resume every wait through another process than the one it was sent to.
        waits = [k for k in keys if k.startswith("wait-")]
        deadline = time.monotonic() + 60
        with psycopg.connect(database, autocommit=True) as db:
            while True:
                armed = db.execute(
                    "SELECT count(*) FROM pauses WHERE event_name = 'cluster/resume'"
                ).fetchone()
                if armed == (len(waits),) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            servers[2].send([{"name": "cluster/resume", "data": {"key": k}} for k in waits])
            while time.monotonic() < deadline:
                unfinished = db.execute(
                    "SELECT count(*) FROM runs WHERE status NOT IN "
                    "('Completed', 'Failed', 'Cancelled')"
                ).fetchone()
                if unfinished == (0,):
                    break
                time.sleep(0.2)
            runs = db.execute(
                "SELECT run_id, function_id, status, output, events FROM runs"
            ).fetchall()
            steps = db.execute("SELECT run_id, user_id, op, memo, ended_at FROM steps").fetchall()
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
    logs = "\n".join(path.read_text()[-3000:] for path in tmp_path.glob("server-*.log"))

    # Every run completed with its output: the 6 kinds sent, and a child per parent.
    statuses = collections.Counter(status for _, _, status, _, _ in runs)
    assert statuses == {"Completed": len(keys) + PER_KIND}, (statuses, logs)
    keys_of: dict[str, str] = {}
    for run_id, function_id, _, output, events in runs:
        key = orjson.loads(events)[0]["data"]["key"]
        keys_of[run_id] = key
        kind = function_id.split("-", 1)[1]
        assert orjson.loads(output) == expected(kind, key), (function_id, key)

    # No recorded step ran again after it was recorded; one execution per recorded nonce.
    ran = executions(tmp_path, stopped_at)
    by_step: dict[tuple[str, str], list[Execution]] = collections.defaultdict(list)
    for execution in ran:
        by_step[(execution.run, execution.step)].append(execution)
    recorded = 0
    for run_id, user_id, op, memo, ended_at in steps:
        if op != "StepRun":
            continue
        recorded += 1
        nonce = orjson.loads(memo)["data"]["nonce"]
        runs_of_step = by_step[(keys_of[run_id], user_id)]
        assert [e.nonce for e in runs_of_step].count(nonce) == 1, runs_of_step
        for execution in runs_of_step:
            assert execution.start <= ended_at, f"re-ran after it was recorded: {execution}"
            if execution.nonce != nonce:
                # Another execution only where a process stopped while it ran, or whose
                # result could not be recorded because the database cut its connection: a
                # process learns of the cut at its next write, which fails, and its jobs go
                # on a second later (so an execution just after the cut may be lost too).
                cut_short = (
                    execution.pid in stopped_at or execution.start <= cut_at + CUT_NOTICED_MS
                )
                assert cut_short, (execution, runs_of_step, cut_at)
    assert recorded == len(by_step), "a step ran whose result was never recorded"
    again = sum(len(found) - 1 for found in by_step.values())
    print(f"{len(runs)} runs, {recorded} steps recorded, {again} run again after a stop")

    # The limit of 1 held in the whole cluster: no two executions of `limited` overlapped.
    spans = sorted(
        (e.start, e.end if e.end is not None else e.start) for e in ran if e.step == "only"
    )
    assert len(spans) >= PER_KIND
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end, f"two limited calls overlapped: {spans}"
