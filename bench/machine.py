"""What the benchmarks ran on: interpreter, SQLite, CPUs, filesystem, peers' versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import statistics
import time
from pathlib import Path

from mainspring.engine.store import wal_writes


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
    vfs = wal_writes.coalescing_vfs()
    if vfs is not None:
        print(f"  wal      one write per commit (VFS {vfs}, engine/store/_walwrites.c)")
    else:
        print(f"  wal      two writes per page, SQLite's own VFS: {wal_writes.unavailable_reason}")
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


#: What :func:`pace` times: a fixed pure-Python workload, and a small durable write.
PACE_LOOP = 200_000
PACE_SYNCS = 50


def pace(workdir: Path) -> tuple[float, float]:
    """How fast this machine is right now: ms for a fixed pure-Python loop, and µs for one
    4 KiB ``pwrite`` plus ``fdatasync`` in ``workdir`` (medians of several tries).

    A virtual machine's speed drifts by tens of percent over minutes (its host's load, its
    virtual disk's latency). Printed before and after a suite, these say whether a figure
    that moved did so with the machine."""
    loops = []
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(PACE_LOOP):
            total += i & 7
        loops.append((time.perf_counter() - start) * 1000)
    path = workdir / "pace.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        block = b"\0" * 4096
        for _ in range(8):  # overwrite blocks already on disk, as a WAL in use does
            os.write(fd, block)
        os.fsync(fd)
        syncs = []
        for i in range(PACE_SYNCS):
            start = time.perf_counter()
            os.pwrite(fd, block, (i % 8) * 4096)
            os.fdatasync(fd)
            syncs.append((time.perf_counter() - start) * 1e6)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(loops), statistics.median(syncs)


def print_pace(workdir: Path, when: str) -> None:
    loop_ms, sync_us = pace(workdir)
    print(
        f"machine pace ({when}): python loop {loop_ms:.1f} ms, "
        f"4 KiB write + fdatasync {sync_us:.0f} µs (lower is faster)",
        flush=True,
    )
