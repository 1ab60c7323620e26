"""Workloads (a), (b) and (c) on Restate (restate-server 1.7.12, restate-sdk 1.3.0 for Python).

The definitions follow ../shared/peers/restate/ (run.sh, bench_restate.py, bench_svc.py):

- (a) one invocation of `Bench/seq` running n sequential `ctx.run_typed` steps, for n = 0 and
  n = N_SEQ;
- (b) one invocation of `Bench/fan`: N_FAN `ctx.run_typed` futures, `restate.gather`, fan-in;
- (c) N_RUNS invocations of `Bench/one` started back to back with `/send`, then all attached.

restate-server and the SDK's service (the shared bench_svc.py, served by hypercorn over HTTP/2
cleartext) are two separate processes listening on 127.0.0.1 only. The driver runs in this
process, with the HTTP suite's client (`bench/wire_client.py`: requests encoded before the
clock, kept-alive connections) against the ingress, and its CPU, the server's and the
service's during the timed runs are measured as for the other systems (`bench/cpu.py`).
Neither the server nor the SDK can be imported here: they live in a throwaway npm prefix and
venv, which the shared install.sh makes when they are missing. So this module talks to them
over HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench.common import (
    N_FAN,
    N_RUNS,
    N_SEQ,
    REPS_SPREAD,
    Record,
    Workload,
    measure_async,
    per_step_record,
    spread,
    throughput_record,
    total_record,
)
from bench.cpu import SERVER, CpuMeter, describe
from bench.wire_client import Answer, WireClient

SYSTEM: Final = "restate"
PEER_WORKLOADS: Final[tuple[Workload, ...]] = ("a", "b", "c")

SERVER_PACKAGE: Final = "@restatedev/restate-server@1.7.12"
SDK_REQUIREMENT: Final = "restate-sdk==1.3.0"
# Where install.sh puts things unless told otherwise (the same defaults as the shared scripts,
# so an installation made by hand with them is reused). RESTATE_VENV, not install.sh's VENV,
# is read from our environment: a variable named VENV may well mean something else here.
DEFAULT_PREFIX: Final = "/tmp/restate"
DEFAULT_VENV: Final = "/tmp/venv-restate"
SERVER_IN_PREFIX: Final = "node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"

INSTALL_TIMEOUT_S: Final = 900.0  # npm + pip on a slow link
STARTUP_TIMEOUT_S: Final = 60.0  # each of: server health, registration, first invocation
STOP_TIMEOUT_S: Final = 10.0  # graceful shutdown before SIGKILL
REQUEST_TIMEOUT_S: Final = 120.0  # as bench_restate.py
POLL_S: Final = 0.1
JSON: Final = {"content-type": "application/json"}


@dataclass(frozen=True)
class Installation:
    server: Path  # the restate-server binary
    python: Path  # the venv's interpreter, which has restate-sdk and hypercorn
    shared: Path  # the folder with install.sh, bench_svc.py and hypercorn.toml
    sdk_version: str


@dataclass(frozen=True)
class Child:
    """A process we started, in a session of its own, with its output in `log_path`."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with status {code}; end of its log:\n{_tail(self.log_path)}"
            )


def run_restate(
    workloads: Sequence[Workload],
    log: Callable[[str], None] = print,
    *,
    workdir: Path | None = None,
) -> list[Record]:
    """Run `workloads` (a subset of a, b, c) on Restate and return one record for each.

    Installs Restate first if it is missing, starts restate-server and the service on free
    loopback ports with a base dir in a fresh temporary directory (inside `workdir` if given),
    and always stops both and removes the directory before returning or raising.
    """
    todo = list(workloads)
    unsupported = [w for w in todo if w not in PEER_WORKLOADS]
    if unsupported:
        raise ValueError(f"workloads {unsupported} are not run on Restate (only a, b, c)")
    if not todo:
        return []
    inst = ensure_installed(log)
    base = Path(tempfile.mkdtemp(prefix="mainspring-restate-", dir=workdir))
    children: list[Child] = []
    try:
        node_port, admin_port, ingress_port, svc_port = _free_ports(4)
        server_env = {
            **os.environ,
            "RESTATE_BIND_IP": "127.0.0.1",
            "RESTATE_DISABLE_TELEMETRY": "true",
            # TCP only: no unix sockets in the base dir, as run.sh.
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_BIND_PORT": str(node_port),
            "RESTATE_ADMIN__BIND_PORT": str(admin_port),
            "RESTATE_INGRESS__BIND_PORT": str(ingress_port),
        }
        children.append(
            _start(
                "restate-server",
                [str(inst.server), "--no-logo", "--base-dir", str(base / "data")],
                cwd=base,
                env=server_env,
                log_path=base / "server.log",
            )
        )
        # The shared hypercorn.toml sets HTTP/2 stream and keep-alive limits; --bind after
        # --config replaces only its fixed port. cwd is the shared folder, so `python -m`
        # puts bench_svc.py on the path and the service is not duplicated here.
        children.append(
            _start(
                "hypercorn (restate-sdk service)",
                [
                    str(inst.python),
                    "-m",
                    "hypercorn",
                    "--config",
                    str(inst.shared / "hypercorn.toml"),
                    "--bind",
                    f"127.0.0.1:{svc_port}",
                    "bench_svc:app",
                ],
                cwd=inst.shared,
                # The shared folder is read-only: do not try to write __pycache__ there.
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                log_path=base / "service.log",
            )
        )
        admin = f"http://127.0.0.1:{admin_port}"
        ingress = f"http://127.0.0.1:{ingress_port}"
        _set_up(admin, ingress, f"http://127.0.0.1:{svc_port}", children)
        log(
            f"  {SYSTEM}: {SERVER_PACKAGE.rsplit('@', 1)[1]} server, restate-sdk "
            f"{inst.sdk_version} service on hypercorn; both on 127.0.0.1, driver in this process"
        )
        # Made now that hypercorn has started its worker, which is then in the service's tree.
        processes = {SERVER: children[0].proc.pid, "service": children[1].proc.pid}
        return asyncio.run(_drive(todo, ingress_port, processes, log))
    finally:
        for child in reversed(children):
            _stop(child)
        shutil.rmtree(base, ignore_errors=True)


# --- installation --------------------------------------------------------------------------


def ensure_installed(log: Callable[[str], None] = print) -> Installation:
    """Find restate-server and the SDK's venv, running the shared install.sh if either is
    missing (or the venv lacks restate-sdk or hypercorn, e.g. after a failed pip install)."""
    shared = Path(
        os.environ.get(
            "RESTATE_PEER_DIR",
            Path(__file__).resolve().parents[3] / "shared" / "peers" / "restate",
        )
    )
    for name in ("install.sh", "bench_svc.py", "hypercorn.toml"):
        if not (shared / name).is_file():
            raise RuntimeError(
                f"{shared / name} not found: set RESTATE_PEER_DIR to the shared peers/restate"
            )
    prefix = Path(os.environ.get("RESTATE_PREFIX", DEFAULT_PREFIX))
    venv = Path(os.environ.get("RESTATE_VENV", DEFAULT_VENV))
    server = prefix / SERVER_IN_PREFIX
    python = venv / "bin" / "python"
    sdk_version = _sdk_version(python) if server.is_file() else None
    if sdk_version is None:
        log(f"  {SYSTEM}: installing {SERVER_PACKAGE} into {prefix}, {SDK_REQUIREMENT} into {venv}")
        _install(shared / "install.sh", prefix, venv, server)
        sdk_version = _sdk_version(python)
        if sdk_version is None:
            raise RuntimeError(
                f"install.sh succeeded but {python} cannot import restate and hypercorn"
            )
    return Installation(server, python, shared, sdk_version)


def _sdk_version(python: Path) -> str | None:
    """restate-sdk's version in the venv, or None if the venv or either package is missing."""
    if not python.is_file():
        return None
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, hypercorn, restate; print(m.version('restate-sdk'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _install(script: Path, prefix: Path, venv: Path, server: Path) -> None:
    for tool, needed_for in (("npm", SERVER_PACKAGE), ("python3", SDK_REQUIREMENT)):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"cannot install Restate: {tool} not found (needed for {needed_for})"
            )
    env = {**os.environ, "RESTATE_PREFIX": str(prefix), "VENV": str(venv)}
    try:
        done = subprocess.run(
            ["bash", str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{script} did not finish within {INSTALL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        # install.sh runs npm first, then pip: whether the binary exists says which one failed.
        what = (
            f"npm install of {SERVER_PACKAGE} into {prefix}"
            if not server.is_file()
            else f"venv creation or pip install of {SDK_REQUIREMENT} and hypercorn in {venv}"
        )
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed ({script} exit status {done.returncode}):\n{output}")


# --- processes -----------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """n distinct ports the kernel has just handed out on 127.0.0.1.

    All sockets stay open until every port is known, so the ports differ. The window between
    closing them and the children binding is tiny, whereas fixed ports would collide with any
    server left running by an earlier run.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _start(name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Child:
    with log_path.open("wb") as out:
        # A session of its own, so that _stop can signal hypercorn's worker process too.
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log_path)


def _stop(child: Child) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.proc.pid, signal.SIGTERM)
    try:
        child.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.strip().splitlines()[-lines:])


def _wait_until(what: str, children: Sequence[Child], ready: Callable[[], str | None]) -> None:
    """Poll `ready` (None = ready, else why not) until STARTUP_TIMEOUT_S, failing early if a
    child has exited."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        for child in children:
            child.check_alive()
        try:
            why = ready()
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.name}:\n{_tail(c.log_path)}" for c in children)
            raise RuntimeError(
                f"{what} not done within {STARTUP_TIMEOUT_S:.0f} s (last: {why})\n{logs}"
            )
        time.sleep(POLL_S)


def _set_up(admin: str, ingress: str, service: str, children: Sequence[Child]) -> None:
    """Wait for the server, register the service's deployment, and wait until the ingress
    answers an invocation, so that the warm-up run is not also the schema's first use."""
    with httpx.Client(timeout=10.0) as client:

        def healthy() -> str | None:
            r = client.get(f"{admin}/health")
            return None if r.is_success else f"HTTP {r.status_code}"

        def registered() -> str | None:
            r = client.post(f"{admin}/deployments", json={"uri": service})
            return None if r.is_success else f"HTTP {r.status_code}: {r.text[:300]}"

        def invocable() -> str | None:
            r = client.post(f"{ingress}/Bench/one", content="0", headers=JSON)
            return None if r.is_success and r.text == "0" else f"HTTP {r.status_code}: {r.text}"

        _wait_until(f"restate-server health on {admin}", children, healthy)
        _wait_until(f"registering the deployment {service}", children, registered)
        _wait_until(f"a first invocation through {ingress}", children, invocable)


# --- workloads -----------------------------------------------------------------------------


def _check(got: int, want: int, what: str) -> None:
    if got != want:
        raise RuntimeError(f"Restate {what}: result {got}, expected {want}")


async def _drive(
    todo: Sequence[Workload],
    ingress_port: int,
    processes: dict[str, int],
    log: Callable[[str], None],
) -> list[Record]:
    async with WireClient("127.0.0.1", ingress_port, timeout=REQUEST_TIMEOUT_S) as client:
        # As bench_restate.py: a connection for each of (c)'s attaches, which all wait at
        # once; opened now, so that no timed run opens one.
        await client.open(N_RUNS)

        def checked(answer: Answer, what: str) -> Answer:
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"Restate {what}: HTTP {answer.status}: {answer.text[:300]}")
            return answer

        def call(handler: str, arg: int) -> Callable[[], Awaitable[int]]:
            request = client.prepare("POST", f"/Bench/{handler}", str(arg).encode())

            async def send() -> int:
                return int(checked(await client.send(request), f"{handler}({arg})").text)

            return send

        def run_seq(n: int) -> Callable[[], Awaitable[None]]:
            send = call("seq", n)

            async def run() -> None:
                _check(await send(), sum(range(n)), f"{n}-step invocation")

            return run

        fan = call("fan", N_FAN)

        async def run_fan() -> None:
            _check(await fan(), sum(range(N_FAN)), "fan-out invocation")

        starts = [client.prepare("POST", "/Bench/one/send", str(i).encode()) for i in range(N_RUNS)]

        async def attach(invocation_id: str) -> int:
            answer = await client.request("GET", f"/restate/invocation/{invocation_id}/attach")
            return int(checked(answer, "attach").text)

        async def run_many() -> None:
            # Started one after another, each /send returning once the invocation is accepted.
            ids: list[str] = []
            for request in starts:
                answer = checked(await client.send(request), "one/send")
                ids.append(str(answer.json()["invocationId"]))
            results = await asyncio.gather(*(attach(x) for x in ids))
            _check(sum(results), sum(range(N_RUNS)), "one-step invocations")

        records: list[Record] = []
        for workload in todo:
            meter = CpuMeter.of(processes)
            if workload == "a":
                empty = await measure_async(run_seq(0), meter=meter)
                full = await measure_async(run_seq(N_SEQ), meter=meter)
                log(f"  {SYSTEM} a: empty run {empty.describe()}")
                log(f"  {SYSTEM} a: {N_SEQ}-step run {full.describe()}")
                record = per_step_record("a", SYSTEM, empty, full, N_SEQ)
            elif workload == "b":
                sample = await measure_async(run_fan, meter=meter)
                log(f"  {SYSTEM} b: fan-out {N_FAN} {sample.describe()}")
                record = total_record("b", SYSTEM, sample)
                record["samples"] = [run * 1e3 for run in sample.runs]
            elif workload == "c":
                sample = await measure_async(run_many, reps=REPS_SPREAD, meter=meter)
                log(f"  {SYSTEM} c: {N_RUNS} one-step runs {sample.describe()}")
                record = throughput_record("c", SYSTEM, sample, N_RUNS)
                record["samples"] = [N_RUNS / run for run in sample.runs]
                log(f"  {SYSTEM} c: {spread(record['samples'], 'runs/s')}")
            else:  # run_restate has already refused it
                raise ValueError(f"workload {workload!r} is not run on Restate")
            record["cpu"] = meter.shares()
            log(f"  {SYSTEM} {workload}: cpu while timed: {describe(record['cpu'])}")
            records.append(record)
        return records
