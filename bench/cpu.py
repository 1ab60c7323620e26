"""CPU used while the clock runs: by the driver (this process) and by the processes it drives
(a server, an app, their workers), to show what each figure cost and who paid.

This process's CPU is `time.process_time` (every thread of it). Another process's is the
``utime + stime`` of ``/proc/PID/stat`` (the whole process, threads that ended included),
in clock ticks (1/100 s): coarse for one timed run, so the shares are summed over all the
measured runs of a workload. The processes are found once, when the meter is made (a
process and its descendants at that time: hypercorn's worker, say), since none starts or
ends while a workload runs. Where /proc is missing the others' shares are left out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
#: What the shares of the driver (this process) are filed under, and the measured server's.
DRIVER: Final = "driver"
SERVER: Final = "server"


def _ticks_per_second() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):  # no sysconf name: not Linux
        return 100


TICKS: Final = _ticks_per_second()


def stat_fields(line: str) -> list[str]:
    """The fields of a ``/proc/PID/stat`` line after the command name (which is in
    parentheses and may hold spaces or parentheses itself): the 3rd field (state) first."""
    return line[line.rindex(")") + 2 :].split()


def cpu_seconds(line: str) -> float:
    """utime + stime of a ``/proc/PID/stat`` line, in seconds."""
    fields = stat_fields(line)
    return (int(fields[11]) + int(fields[12])) / TICKS


def parent_of(line: str) -> int:
    return int(stat_fields(line)[1])


def _stat(pid: int, proc: Path) -> str | None:
    try:
        return (proc / str(pid) / "stat").read_text()
    except OSError:  # gone, or no /proc
        return None


def process_tree(root: int, proc: Path = PROC) -> list[int]:
    """``root`` and its descendants alive now (``root`` alone if /proc cannot be listed)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [entry.name for entry in proc.iterdir() if entry.name.isdigit()]
    except OSError:
        return [root]
    for name in entries:
        line = _stat(int(name), proc)
        if line is not None:
            children.setdefault(parent_of(line), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_cpu_seconds(pids: list[int], proc: Path = PROC) -> float | None:
    """The CPU seconds of ``pids`` together; None if none of them can be read."""
    lines = [line for pid in pids if (line := _stat(pid, proc)) is not None]
    return sum(cpu_seconds(line) for line in lines) if lines else None


@dataclass
class CpuMeter:
    """Adds up, over the windows between :meth:`start` and :meth:`stop`, the wall time,
    the driver's CPU and each watched process tree's CPU."""

    watched: dict[str, list[int]] = field(default_factory=dict)
    proc: Path = PROC
    wall: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    _started: tuple[float, float, dict[str, float | None]] | None = None

    @classmethod
    def of(cls, processes: Mapping[str, int], proc: Path = PROC) -> CpuMeter:
        """A meter for the driver and the trees of ``processes`` (name: pid)."""
        return cls({name: process_tree(pid, proc) for name, pid in processes.items()}, proc)

    def _others(self) -> dict[str, float | None]:
        return {name: tree_cpu_seconds(pids, self.proc) for name, pids in self.watched.items()}

    def start(self) -> None:
        # The others first and last: their reads then fall outside the driver's window.
        others = self._others()
        self._started = (time.perf_counter(), time.process_time(), others)

    def stop(self) -> None:
        if self._started is None:
            raise RuntimeError("CpuMeter.stop without start")
        wall0, cpu0, others0 = self._started
        wall, cpu = time.perf_counter(), time.process_time()
        others1 = self._others()
        self._started = None
        self.wall += wall - wall0
        self.used[DRIVER] = self.used.get(DRIVER, 0.0) + cpu - cpu0
        for name, before in others0.items():
            after = others1.get(name)
            if before is not None and after is not None:
                self.used[name] = self.used.get(name, 0.0) + after - before

    def shares(self) -> dict[str, float]:
        """CPU seconds per wall second (1.0 = one core busy), the driver's first."""
        if self.wall <= 0:
            return {}
        return {name: seconds / self.wall for name, seconds in self.used.items()}


def describe(shares: Mapping[str, float]) -> str:
    """``driver 7%, server 88%, app 41% of a core (driver/server 0.08)``."""
    if not shares:
        return "cpu not measured"
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items()) + " of a core"
    if shares.get(DRIVER) is not None and shares.get(SERVER, 0.0) > 0:
        text += f" (driver/server {shares[DRIVER] / shares[SERVER]:.2f})"
    return text
