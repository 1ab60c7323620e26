#!/usr/bin/env python3
"""Benchmark Mainspring's embedded engine against DBOS Transact, in one process.

    python bench/run.py [--json FILE] [--only a,b,c,d,e,f] [--skip-peers] [--workdir DIR]

Runs the selected workloads on Mainspring (durability "full", then "normal"), then (a)-(c) on
DBOS with a SQLite system database, prints a comparison table and optionally writes the records
as JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("mainspring") is None and (ROOT / "src").is_dir():
    sys.path.insert(1, str(ROOT / "src"))  # not installed into this interpreter: use the source

from bench.common import (  # noqa: E402
    DESCRIPTIONS,
    LIFECYCLE,
    N_LONG,
    N_SEQ,
    REPS,
    WARMUP,
    WORKLOADS,
    Record,
    Workload,
)

if TYPE_CHECKING:
    from bench.mainspring_workloads import Durability

DBOS_SYSTEM = "dbos-sqlite"
PEER_WORKLOADS: tuple[Workload, ...] = ("a", "b", "c")
D_OVER_A_TARGET = 1.5


@dataclass(frozen=True)
class Target:
    bound: float
    higher_is_better: bool
    text: str

    def met(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound


TARGETS: dict[Workload, Target] = {
    "a": Target(0.35, False, "<= 0.35 ms/step"),
    "b": Target(30.0, False, "<= 30 ms"),
    "c": Target(1500.0, True, ">= 1500 runs/s"),
    "d": Target(D_OVER_A_TARGET, False, f"<= {D_OVER_A_TARGET}x (a)"),
}

#: Targets of the run-lifecycle workloads, by metric.
LIFECYCLE_TARGETS: dict[str, Target] = {
    "rss": Target(150.0, False, "< 150 MB"),
    "max_wake_lateness": Target(2000.0, False, "< 2000 ms"),
    "total": Target(1000.0, False, "< 1000 ms"),
}


@dataclass
class Results:
    records: list[Record] = field(default_factory=list)
    errors: dict[tuple[Workload, str], str] = field(default_factory=dict)
    failed: bool = False

    def get(self, workload: Workload, system: str) -> Record | None:
        for record in self.records:
            if record["workload"] == workload and record["system"] == system:
                return record
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mainspring vs DBOS Transact micro-benchmarks (see bench/README.md)."
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the records here")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        metavar="a,b,c,d",
        help="comma-separated workloads to run (default: all)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="run Mainspring only")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="directory for the database files (a fresh temporary directory is made inside it "
        "and removed afterwards; default: the system temp dir). Its filesystem sets fsync cost.",
    )
    args = parser.parse_args(argv)
    selected = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown or not selected:
        parser.error(f"--only takes a comma-separated subset of {','.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if w in selected]
    return args


# --- machine facts -------------------------------------------------------------------------


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


def print_machine_facts(workdir: Path) -> None:
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
    print(f"  peers    {dbos}")


# --- running -------------------------------------------------------------------------------


def _attempt(results: Results, workload: Workload, system: str, fn: Callable[[], Record]) -> None:
    try:
        results.records.append(fn())
    except Exception as exc:
        results.failed = True
        results.errors[(workload, system)] = f"{type(exc).__name__}: {exc}"
        print(f"  {system} {workload}: FAILED", file=sys.stderr)
        traceback.print_exc()


def run_mainspring(workloads: Sequence[Workload], workdir: Path, results: Results) -> list[str]:
    """Run Mainspring; returns its system names (for the table)."""
    durabilities: tuple[Durability, ...] = ("full", "normal")
    systems = [f"mainspring-{d}" for d in durabilities]
    if not workloads:
        return systems
    print(
        "\nmainspring (embedded engine; durability 'full' = SQLite synchronous=FULL, "
        "'normal' = synchronous=NORMAL)"
    )
    try:
        from bench import mainspring_workloads as msw

        msw.check_api()
    except (ImportError, AttributeError) as exc:
        reason = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"  mainspring {reason}")
        results.failed = True
        for workload in workloads:
            for system in systems:
                results.errors[(workload, system)] = reason
        return systems
    print(f"  version {msw.version()}")
    for workload in workloads:
        for durability in durabilities:
            system = msw.system_name(durability)
            _attempt(
                results, workload, system, functools.partial(msw.run, workload, durability, workdir)
            )
    return systems


def run_lifecycle(workloads: Sequence[Workload], workdir: Path, results: Results) -> None:
    """Run (e) and (f), each in a fresh interpreter so its RSS is the engine's alone."""
    todo = [w for w in workloads if w in LIFECYCLE]
    if not todo:
        return
    print("\nmainspring run lifecycle (durability 'normal', one process per workload)")
    for workload in todo:
        done = subprocess.run(
            [sys.executable, "-m", "bench.lifecycle", workload, "--workdir", str(workdir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        if done.returncode != 0 or not lines:
            results.failed = True
            results.errors[(workload, "mainspring-normal")] = done.stderr.strip()[-500:]
            continue
        results.records.extend(json.loads(lines[-1]))


def print_lifecycle_table(results: Results) -> None:
    rows = [r for r in results.records if r["workload"] in LIFECYCLE]
    if not rows:
        return
    print()
    for record in rows:
        target = LIFECYCLE_TARGETS[record["metric"]]
        verdict = "yes" if target.met(record["value"]) else "NO"
        print(
            f"({record['workload']}) {record['metric']:<18} {record['value']:>9.1f} "
            f"{record['unit']:<3} target {target.text:<10} met? {verdict}"
        )


def run_dbos(workloads: Sequence[Workload], workdir: Path, results: Results) -> bool:
    """Run DBOS on the workloads it has; returns whether it was attempted at all."""
    todo = [w for w in workloads if w in PEER_WORKLOADS]
    if not todo:
        return False
    print("\ndbos (DBOS Transact, in-process, SQLite system database)")
    try:
        from bench.peers import dbos_peer
    except ImportError as exc:
        print(f"  DBOS unavailable, continuing with Mainspring only: {type(exc).__name__}: {exc}")
        print("  (install it with: .venv/bin/pip install 'dbos==3.4.0', the `bench` extra)")
        for workload in todo:
            results.errors[(workload, DBOS_SYSTEM)] = f"unavailable: {type(exc).__name__}: {exc}"
        return True
    print(f"  version {dbos_peer.version()}")
    peer_dir = workdir / "dbos"
    peer_dir.mkdir()
    try:
        with dbos_peer.DbosPeer(peer_dir) as peer:
            for workload in todo:
                _attempt(results, workload, DBOS_SYSTEM, functools.partial(peer.run, workload))
            print(f"  storage: {peer.storage()}")
    except Exception as exc:
        results.failed = True
        print("  DBOS failed to launch or shut down", file=sys.stderr)
        traceback.print_exc()
        for workload in todo:
            results.errors.setdefault((workload, DBOS_SYSTEM), f"{type(exc).__name__}: {exc}")
    return True


# --- reporting -----------------------------------------------------------------------------


def _fmt_value(record: Record | None, error: str | None) -> str:
    if record is None:
        if error is None:
            return "-"
        return "unavailable" if error.startswith("unavailable") else "error"
    value = record["value"]
    if record["unit"] == "ms/step":
        return f"{value:.3f} ms/step"
    if record["unit"] == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.0f} runs/s"


def _advantage(ours: Record, peer: Record) -> float:
    """How many times better Mainspring is (>1 = better): peer/ours for times, ours/peer for
    throughput."""
    if ours["metric"] == "throughput":
        return ours["value"] / peer["value"]
    return peer["value"] / ours["value"]


def d_over_a(results: Results, system: str) -> float | None:
    a, d = results.get("a", system), results.get("d", system)
    if a is None or d is None or a["value"] <= 0:
        return None
    return d["value"] / a["value"]


def print_table(
    workloads: Sequence[Workload], ms_systems: Sequence[str], show_dbos: bool, results: Results
) -> None:
    header = ["workload", *(s.replace("mainspring-", "mainspring(") + ")" for s in ms_systems)]
    if show_dbos:
        header += ["dbos(sqlite)", "ratio dbos/mainspring (full | normal)"]
    header += ["target", "met? (full | normal)"]
    rows: list[list[str]] = []
    for workload in workloads:
        row = [f"({workload}) {DESCRIPTIONS[workload]}"]
        ours = [results.get(workload, s) for s in ms_systems]
        for record, system in zip(ours, ms_systems, strict=True):
            row.append(_fmt_value(record, results.errors.get((workload, system))))
        peer = results.get(workload, DBOS_SYSTEM)
        if show_dbos:
            if workload in PEER_WORKLOADS:
                row.append(_fmt_value(peer, results.errors.get((workload, DBOS_SYSTEM))))
                ratios = [
                    "-" if r is None or peer is None else f"{_advantage(r, peer):.1f}x"
                    for r in ours
                ]
                row.append(" | ".join(ratios))
            else:
                row += ["not run", "-"]
        target = TARGETS[workload]
        row.append(target.text)
        verdicts: list[str] = []
        for record, system in zip(ours, ms_systems, strict=True):
            if workload == "d":
                ratio = d_over_a(results, system)
                verdicts.append(
                    "-" if ratio is None else f"{'yes' if target.met(ratio) else 'NO'} {ratio:.2f}x"
                )
            else:
                verdicts.append(
                    "-" if record is None else ("yes" if target.met(record["value"]) else "NO")
                )
        row.append(" | ".join(verdicts))
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if show_dbos:
        print(
            "ratio > 1 means Mainspring is better: dbos/mainspring for times, "
            "mainspring/dbos for (c) throughput."
        )
    if "d" in workloads:
        parts = []
        for system in ms_systems:
            ratio = d_over_a(results, system)
            shown = "n/a (needs (a) and (d))" if ratio is None else f"{ratio:.2f}x"
            parts.append(f"{system.removeprefix('mainspring-')} {shown}")
        print(
            f"(d)/(a) per-step ratio, {N_LONG:,} vs {N_SEQ} steps: {', '.join(parts)} "
            f"(target <= {D_OVER_A_TARGET}x)"
        )
    grouped: dict[str, list[str]] = {}
    for (workload, system), error in sorted(results.errors.items()):
        grouped.setdefault(error, []).append(f"({workload}) {system}")
    for error, where in grouped.items():
        print(f"not measured: {', '.join(where)}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workloads: list[Workload] = args.workloads
    with tempfile.TemporaryDirectory(prefix="mainspring-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print_machine_facts(workdir)
        print(f"method: median of {REPS} measured runs after {WARMUP} warm-up")
        results = Results()
        core = [w for w in workloads if w not in LIFECYCLE]
        ms_systems = run_mainspring(core, workdir, results)
        show_dbos = not args.skip_peers and run_dbos(core, workdir, results)
        run_lifecycle(workloads, workdir, results)
    if core:
        print_table(core, ms_systems, show_dbos, results)
    print_lifecycle_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results.records, indent=2) + "\n")
        print(f"\nwrote {len(results.records)} records to {args.json}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
