"""What the benchmarks ran on: interpreter, SQLite, CPUs, filesystem, peers' versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
from pathlib import Path


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """Filesystem type and device of the mount holding `path` (Linux), else 'unknown'."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best = ("", "unknown")
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mountpoint, fstype = parts[0], parts[1], parts[2]
        inside = resolved == mountpoint or resolved.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) >= len(best[0]):
            best = (mountpoint, f"{fstype} ({device} on {mountpoint})")
    return best[1]


def print_machine_facts(workdir: Path, *, http: bool = False) -> None:
    print("machine:")
    print(f"  python   {platform.python_implementation()} {platform.python_version()}")
    print(f"  sqlite   {sqlite3.sqlite_version} (Python's sqlite3 module)")
    print(f"  nproc    {_nproc()} (cpu_count {os.cpu_count()}), {_cpu_model()}")
    print(f"  platform {platform.platform()}")
    print(f"  workdir  {workdir} on {_filesystem(workdir)}")
    try:
        dbos = f"dbos {importlib.metadata.version('dbos')}"
    except importlib.metadata.PackageNotFoundError:
        dbos = "dbos not installed"
    if not http:
        print(f"  peers    {dbos}")
        return
    from bench import http_workloads

    print(f"  http     {http_workloads.versions()}")
