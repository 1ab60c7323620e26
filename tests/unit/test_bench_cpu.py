"""bench/cpu.py: /proc/PID/stat is read right (a command name may hold spaces and
parentheses), a process's tree is found, and the meter adds up only the windows it was told
about. The other processes' CPU comes from a fake /proc, so nothing here depends on timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cpu


def stat_line(pid: int, ppid: int, utime: int, stime: int, comm: str = "python") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0\n"


def write_stat(proc: Path, pid: int, ppid: int, utime: int, stime: int) -> None:
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    (proc / str(pid) / "stat").write_text(stat_line(pid, ppid, utime, stime))


def test_a_stat_line_with_an_odd_command_name() -> None:
    line = stat_line(42, 7, 250, 50, comm="a) (b c")
    assert cpu.parent_of(line) == 7
    assert cpu.cpu_seconds(line) == pytest.approx(300 / cpu.TICKS)


def test_a_process_tree_and_its_cpu_from_a_fake_proc(tmp_path: Path) -> None:
    write_stat(tmp_path, 10, 1, 100, 0)  # the root
    write_stat(tmp_path, 11, 10, 20, 5)  # its worker
    write_stat(tmp_path, 12, 11, 1, 1)  # the worker's child
    write_stat(tmp_path, 13, 1, 999, 999)  # unrelated
    (tmp_path / "self").mkdir()  # not a pid
    assert sorted(cpu.process_tree(10, tmp_path)) == [10, 11, 12]
    assert cpu.tree_cpu_seconds([10, 11, 12], tmp_path) == pytest.approx(127 / cpu.TICKS)
    assert cpu.tree_cpu_seconds([99], tmp_path) is None
    assert cpu.process_tree(10, tmp_path / "missing") == [10]


def test_the_meter_counts_only_its_windows(tmp_path: Path) -> None:
    write_stat(tmp_path, 10, 1, 100, 0)
    write_stat(tmp_path, 20, 1, 0, 0)
    meter = cpu.CpuMeter.of({cpu.SERVER: 10, "app": 20}, tmp_path)
    meter.start()
    write_stat(tmp_path, 10, 1, 150, 10)  # +60 ticks inside the window
    write_stat(tmp_path, 20, 1, 5, 0)
    meter.stop()
    write_stat(tmp_path, 10, 1, 900, 10)  # outside any window: not counted
    meter.start()
    write_stat(tmp_path, 20, 1, 10, 0)
    meter.stop()
    assert list(meter.used) == [cpu.DRIVER, cpu.SERVER, "app"]
    assert meter.used[cpu.SERVER] == pytest.approx(60 / cpu.TICKS)
    assert meter.used["app"] == pytest.approx(10 / cpu.TICKS)
    assert meter.used[cpu.DRIVER] >= 0
    shares = meter.shares()
    assert shares[cpu.SERVER] == pytest.approx(meter.used[cpu.SERVER] / meter.wall)


def test_a_process_gone_mid_window_is_left_out(tmp_path: Path) -> None:
    write_stat(tmp_path, 10, 1, 100, 0)
    meter = cpu.CpuMeter.of({cpu.SERVER: 10}, tmp_path)
    meter.start()
    (tmp_path / "10" / "stat").unlink()
    meter.stop()
    assert cpu.SERVER not in meter.used


def test_stop_without_start() -> None:
    with pytest.raises(RuntimeError, match="without start"):
        cpu.CpuMeter().stop()


def test_the_real_proc_finds_a_child() -> None:
    if not cpu.PROC.joinpath("self", "stat").exists():
        pytest.skip("no /proc")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in cpu.process_tree(os.getpid())
        assert cpu.tree_cpu_seconds([child.pid]) is not None
    finally:
        child.kill()
        child.wait()


def test_describe() -> None:
    text = cpu.describe({cpu.DRIVER: 0.08, cpu.SERVER: 0.8, "app": 0.4})
    assert text == "driver 8%, server 80%, app 40% of a core (driver/server 0.10)"
    assert cpu.describe({}) == "cpu not measured"
