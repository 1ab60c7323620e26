"""What the SIGKILL end-to-end tests share: the side-effect log the apps write (one line
when a step's handler starts, one when it ends), and the engine processes they kill."""

from __future__ import annotations

import dataclasses
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

#: How often waits look again.
POLL = 0.005


StepKey = tuple[str, str]  # (run key, step user id)


@dataclasses.dataclass(frozen=True)
class Line:
    run_key: str
    step: str
    what: str  # "start" or "end"
    nonce: str
    incarnation: int
    seen_at: float  # time.monotonic() when the test first read it


def now_ms() -> int:
    return int(time.time() * 1000)


class Effects:
    """Reads the side-effect file incrementally, one complete line at a time."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.lines: list[Line] = []
        self._offset = 0

    def poll(self, incarnation: int) -> list[Line]:
        """Lines appended since the last poll (attributed to ``incarnation``)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        new: list[Line] = []
        now = time.monotonic()
        for raw in chunk[:end].decode().splitlines():
            parts = raw.split(" ")
            assert len(parts) == 4, f"bad line {raw!r}"
            assert parts[2] in ("start", "end"), f"bad line {raw!r}"
            new.append(Line(parts[0], parts[1], parts[2], parts[3], incarnation, now))
        self.lines.extend(new)
        return new

    def drain(self, incarnation: int) -> None:
        """After the process died: read everything; nothing may be left half-written."""
        self.poll(incarnation)
        assert self.path.stat().st_size == self._offset, "a torn line in the effects file"


class Incarnation:
    """One engine process running ``script`` (with the database, the work folder and a
    mode as arguments); its stdout and stderr go to a log file."""

    def __init__(self, script: pathlib.Path, tmp: pathlib.Path, number: int, mode: str) -> None:
        self.number = number
        self.log_path = tmp / f"app-{number}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp / "engine.db"), str(tmp), mode],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.proc.poll() is None, (
                f"incarnation {self.number} exited ({self.proc.returncode}) before "
                f"{what}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"no {what} after {timeout}s\n{self.output()}"
            time.sleep(POLL)

    def wait_for_output(self, word: str, timeout: float) -> None:
        self.wait_until(f"{word!r} printed", lambda: word in self.output().split(), timeout)

    def sigkill(self) -> int:
        """Kill the process; returns the epoch ms just before the signal."""
        assert self.proc.poll() is None, (
            f"incarnation {self.number} had already exited ({self.proc.returncode}): "
            f"the kill point came too late\n{self.output()}"
        )
        killed = now_ms()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()
        return killed

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def in_flight(lines: list[Line]) -> dict[StepKey, Line]:
    """Steps started in these lines and not (yet) ended: step -> its start line."""
    flying: dict[StepKey, Line] = {}
    for line in lines:
        key = (line.run_key, line.step)
        if line.what == "start":
            flying[key] = line
        elif key in flying and flying[key].nonce == line.nonce:
            del flying[key]
    return flying


@dataclasses.dataclass(frozen=True)
class Recorded:
    """A step as the database recorded it."""

    op: str
    memo: Any
    nonce: str | None  # a StepRun's; None for steps the engine finishes itself
    started_at: int | None
    ended_at: int


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """What the executions check needs of a kill: which process died, and the steps
    recorded when it did."""

    label: str
    incarnation: int
    steps: Mapping[StepKey, Recorded]


def check_executions(
    lines: Sequence[Line],
    final: Mapping[StepKey, Recorded],
    kills: Sequence[KillPoint],
    context: str,
) -> list[str]:
    """No handler ran after its step was recorded, and memos recorded at a kill never
    changed: each recorded ``StepRun`` names one execution whose start and end are logged;
    any other execution of it ran in an earlier process, killed before the step was
    recorded. Returns those re-runs (killed in flight, not recorded), for the log."""
    killed_at = {kill.incarnation: kill for kill in kills}
    reruns: list[str] = []
    for key, rec in sorted(final.items()):
        for kill in kills:
            snap = kill.steps.get(key)
            if snap is not None:
                assert snap == rec, f"{key}: changed after kill {kill.label}: {snap} {rec}"
        if rec.op != "StepRun":
            continue
        execs = [ln for ln in lines if (ln.run_key, ln.step) == key]
        starts = [ln for ln in execs if ln.what == "start"]
        ends = [ln for ln in execs if ln.what == "end"]
        assert len({ln.nonce for ln in starts}) == len(starts), f"{key}: {execs}"
        assert len({ln.nonce for ln in ends}) == len(ends), f"{key}: {execs}"
        assert {ln.nonce for ln in ends} <= {ln.nonce for ln in starts}, f"{key}: {execs}"
        per_incarnation = [ln.incarnation for ln in starts]
        assert len(set(per_incarnation)) == len(per_incarnation), (
            f"{key} ran twice in one process: {execs}\n{context}"
        )
        kept = [ln for ln in ends if ln.nonce == rec.nonce]
        assert kept, f"{key}: recorded nonce {rec.nonce} matches no execution: {execs}"
        kept_in = kept[0].incarnation
        for ln in starts:
            if ln.nonce == rec.nonce:
                continue
            # Another execution: only in an earlier process, killed before the step was
            # recorded.
            assert ln.incarnation < kept_in, f"{key}: ran after the kept one: {execs}\n{context}"
            earlier = killed_at.get(ln.incarnation)
            assert earlier is not None, f"{key}: ran twice: {execs}\n{context}"
            assert key not in earlier.steps, f"{key}: re-ran though recorded: {execs}\n{context}"
            reruns.append(f"{key[0]}/{key[1]} (incarnation {ln.incarnation})")
        for kill in kills:
            if key in kill.steps:
                assert kept_in <= kill.incarnation, f"{key}: {execs}"
                later = [ln for ln in starts if ln.incarnation > kill.incarnation]
                assert not later, f"{key}: ran after kill {kill.label}: {execs}\n{context}"
    return reruns
