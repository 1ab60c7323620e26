"""The HTTP bench's driver and report, without timing anything: how the driver waits for runs
(``POST /v1/runs/wait``, asked again for what is still going) and checks them, the server
process it measures, and the table's (c) spread and CPU shares."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bench import run as bench_run
from bench.common import Metric, Record, Results
from bench.http_server import ServerProcess
from bench.http_workloads import Driver, check_runs, free_port
from bench.wire_client import Answer, WireClient


class ScriptedClient(WireClient):
    """Answers each request with the next scripted JSON answer; keeps the requests' bodies."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__("127.0.0.1", 9)
        self.answers = answers
        self.asked: list[Any] = []

    async def send(self, request: bytes) -> Answer:
        self.asked.append(orjson.loads(request.partition(b"\r\n\r\n")[2]))
        return Answer(200, orjson.dumps(self.answers.pop(0)))


def run(event: str, run_id: str, output: Any, *, ended: bool = True) -> dict[str, Any]:
    return {
        "event_id": event,
        "run_id": run_id,
        "status": "Completed" if ended else "Running",
        "output": output if ended else None,
        "error": None,
        "ended_at": 1 if ended else None,
    }


async def test_settle_asks_again_for_the_runs_still_going() -> None:
    client = ScriptedClient(
        [
            {"data": [run("e1", "r1", 10), run("e2", "r2", None, ended=False)], "done": False},
            {"data": [run("e2", "r2", 20)], "done": True},
        ]
    )
    await Driver(client).settle(["e1", "e2"], [10, 20], "runs")
    assert [{k: v for k, v in a.items() if k != "timeout"} for a in client.asked] == [
        {"event_ids": ["e1", "e2"]},
        {"run_ids": ["r2"]},
    ]
    assert all(0 < ask["timeout"] <= 60 for ask in client.asked)


async def test_settle_refuses_an_event_with_two_runs() -> None:
    client = ScriptedClient([{"data": [run("e1", "r1", 1), run("e1", "r9", 1)], "done": True}])
    with pytest.raises(RuntimeError, match="several runs"):
        await Driver(client).settle(["e1"], [1], "runs")


@pytest.mark.parametrize(
    ("runs", "problem"),
    [
        ({"e1": run("e1", "r1", 1)}, "1 events started no run"),
        ({"e1": run("e1", "r1", 1), "e2": run("e2", "r2", 3)}, "output 3"),
        ({"e1": run("e1", "r1", 1), "e2": {**run("e2", "r2", 2), "status": "Failed"}}, "Failed"),
    ],
)
def test_check_runs_names_what_is_wrong(runs: dict[str, Any], problem: str) -> None:
    with pytest.raises(RuntimeError, match=problem):
        check_runs(runs, {"e1": 1, "e2": 2}, "runs")
    check_runs({"e1": run("e1", "r1", 1), "e2": run("e2", "r2", 2)}, {"e1": 1, "e2": 2}, "runs")


def test_the_server_is_mainspring_dev_on_a_fresh_database(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "s.db", 8999, tmp_path / "s.log")
    command = server.command()
    assert command[1:4] == ["-m", "mainspring.cli", "dev"]
    assert "--no-poll" in command
    assert command[command.index("--durability") + 1] == "normal"
    assert command[command.index("--database") + 1] == str(tmp_path / "s.db")
    (tmp_path / "s.db").touch()
    with pytest.raises(FileExistsError), server:
        pass


@pytest.mark.slow
def test_the_server_process_serves_and_stops(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "s.db", free_port(), tmp_path / "s.log") as server:
        pid = server.pid

        async def wait_for_nothing() -> Answer:
            async with WireClient("127.0.0.1", server.port) as client:
                [event] = (await client.request("POST", "/e/k", b'{"name": "x/none"}')).json()[
                    "ids"
                ]
                body = orjson.dumps({"event_ids": [event], "timeout": 5})
                return await client.request("POST", "/v1/runs/wait", body)

        answer = asyncio.run(wait_for_nothing())
        assert (answer.status, answer.json()) == (200, {"data": [], "done": True})
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=1.0)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def record(
    workload: Any,
    system: str,
    value: float,
    unit: Any,
    *,
    samples: list[float] | None = None,
    cpu: dict[str, float] | None = None,
) -> Record:
    metric: Metric = "per_step" if unit == "ms/step" else "throughput"
    made = Record(workload=workload, system=system, metric=metric, value=value, unit=unit)
    if samples is not None:
        made["samples"] = samples
    if cpu is not None:
        made["cpu"] = cpu
    return made


def test_the_table_shows_cs_spread_and_the_cpu_shares(capsys: pytest.CaptureFixture[str]) -> None:
    results = Results(
        records=[
            record("a", "mainspring-http", 0.05, "ms/step", cpu={"driver": 0.08, "server": 0.8}),
            record(
                "c",
                "mainspring-http",
                1010.0,
                "runs/s",
                samples=[990.0, 1010.0, 1200.4, 900.2, 1050.0],
                cpu={"driver": 0.07, "server": 0.9, "app": 0.3},
            ),
            record("c", "restate", 180.0, "runs/s", samples=[170.0, 180.0, 200.0]),
        ]
    )
    bench_run.print_http_table(["a", "c"], ["mainspring-http"], True, results)
    out = capsys.readouterr().out
    figures, cpu_table = out.split("cpu while timed", 1)
    [c_row] = [line for line in figures.splitlines() if line.startswith("(c) 200 one-step runs")]
    assert "1,010 runs/s (900-1,200)" in c_row
    assert "180 runs/s (170-200)" in c_row
    assert ">= 1,000 runs/s" in c_row
    cpu_rows = cpu_table.splitlines()
    assert any(r.startswith("(c)") and "7% / 90% / 30%" in r for r in cpu_rows)
    assert any(r.startswith("(a)") and "8% / 80%" in r for r in cpu_rows)


def test_the_typescript_sdk_has_a_column_and_a_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    systems = ["mainspring-http", "inngest-py-http", "inngest-ts-http"]
    results = Results(
        records=[
            record("a", "mainspring-http", 0.05, "ms/step"),
            record("a", "inngest-ts-http", 0.5, "ms/step", cpu={"driver": 0.01, "server": 0.2}),
            record("c", "mainspring-http", 1000.0, "runs/s", samples=[1000.0]),
            record("c", "inngest-ts-http", 250.0, "runs/s", samples=[200.0, 250.0, 300.0]),
        ],
        errors={("a", "inngest-py-http"): "unavailable: no SDK"},
    )
    bench_run.print_http_table(["a", "c"], systems, False, results)
    out, cpu_table = capsys.readouterr().out.split("cpu while timed", 1)
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    assert [c.strip() for c in header.split(" | ")][:7] == [
        "workload",
        *systems,
        "inngest-py/ours",
        "inngest-ts/ours",
        "target (our SDK)",
    ]
    assert header.rstrip().endswith("met? (ours | inngest-py | inngest-ts)")
    rows = {
        line[:3]: [c.strip() for c in line.split(" | ")]
        for line in out.splitlines()
        if " | " in line
    }
    assert rows["(a)"][1:6] == ["0.050 ms/step", "unavailable", "0.500 ms/step", "-", "10.00x"]
    assert rows["(a)"][7:] == ["yes", "-", "yes"]
    assert rows["(c)"][3:6] == ["250 runs/s (200-300)", "-", "4.00x"]
    assert rows["(c)"][7:] == ["yes", "-", "NO"]
    assert "inngest-ts-http" in cpu_table.splitlines()[0]
    assert any(r.startswith("(a)") and "1% / 20%" in r for r in cpu_table.splitlines())


def test_without_node_the_typescript_column_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import http_workloads
    from bench.http_apps import ts_runner

    monkeypatch.setattr(shutil, "which", lambda name: None)  # as if neither node nor npm
    reason = bench_run.http_unavailable("inngest-ts-http")
    assert reason is not None
    assert reason.startswith("unavailable: inngest-ts-http needs node")

    def failed_install() -> None:
        raise subprocess.CalledProcessError(1, ["npm", "ci"])

    monkeypatch.setattr(ts_runner, "node", lambda: "/usr/bin/node")
    monkeypatch.setattr(ts_runner, "install", failed_install)
    reason = http_workloads.ts_unavailable()
    assert reason is not None
    assert reason.startswith("unavailable: inngest-ts-http: Command '['npm', 'ci']'")


def test_an_unavailable_sdk_leaves_the_run_going(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import http_workloads

    started: list[str] = []

    class FakeApp:
        def __init__(self, system: str, workdir: Path, log: Any) -> None:
            self.system = system

        def __enter__(self) -> FakeApp:
            started.append(self.system)
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def run(self, workload: Any) -> Record:
            return record(workload, self.system, 1.0, "ms/step")

    monkeypatch.setattr(http_workloads, "HttpApp", FakeApp)
    monkeypatch.setattr(
        bench_run,
        "http_unavailable",
        lambda system: "unavailable: no node" if system == "inngest-ts-http" else None,
    )
    results = Results()
    systems = bench_run.run_http(["a"], tmp_path, results, official=True)
    assert systems == ["mainspring-http", "inngest-py-http", "inngest-ts-http"]
    assert started == ["mainspring-http", "inngest-py-http"]
    assert results.errors == {("a", "inngest-ts-http"): "unavailable: no node"}
    assert not results.failed
    assert bench_run.run_http(["a"], tmp_path, Results(), official=False) == ["mainspring-http"]
