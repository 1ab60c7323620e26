#!/usr/bin/env python3
"""Benchmark Mainspring's embedded engine against DBOS Transact, in one process; or, with
--http, Mainspring's server and apps over loopback HTTP against Restate.

    python bench/run.py [--json FILE] [--only a,...,f,i,j,k|flow] [--skip-peers] [--workdir DIR]
                        [--postgres URL]
    python bench/run.py --http [--json FILE] [--only a,b,c,g,h] [--skip-peers] [--workdir DIR]

Runs the selected workloads on Mainspring (durability "full", then "normal"), then (a)-(c) on
DBOS with a SQLite system database, prints a comparison table and optionally writes the records
as JSON; the flow-control workloads (i)-(k) run on Mainspring alone (`--only flow` selects
them). With --postgres, (a)-(c) also run on a PostgreSQL server (bench/postgres_suite.py).
With --http: (a)-(c) with our SDK, the official `inngest` Python SDK and the official TypeScript
SDK against our server, then on Restate, and event ingestion (g, h). See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("mainspring") is None and (ROOT / "src").is_dir():
    sys.path.insert(1, str(ROOT / "src"))  # not installed into this interpreter: use the source

from bench import postgres_suite  # noqa: E402
from bench.common import (  # noqa: E402
    DESCRIPTIONS,
    FLOW,
    HTTP_WORKLOADS,
    LIFECYCLE,
    N_LONG,
    N_SEQ,
    REPS,
    REPS_SPREAD,
    WARMUP,
    WORKLOADS,
    Record,
    Results,
    Target,
    Workload,
    advantage,
    attempt,
    fmt_value,
)
from bench.machine import print_machine_facts, print_pace  # noqa: E402

if TYPE_CHECKING:
    from bench.mainspring_workloads import Durability

DBOS_SYSTEM = "dbos-sqlite"
RESTATE_SYSTEM = "restate"
# The systems of --http, as bench/http_workloads.py names them (that module is imported only
# when --http runs, so that the embedded suite does not need uvicorn's server started).
OURS_HTTP = "mainspring-http"
OFFICIAL_HTTP = "inngest-py-http"
TS_HTTP = "inngest-ts-http"
PEER_WORKLOADS: tuple[Workload, ...] = ("a", "b", "c")
D_OVER_A_TARGET = 1.5


TARGETS: dict[Workload, Target] = {
    "a": Target(0.35, False, "<= 0.35 ms/step"),
    "b": Target(30.0, False, "<= 30 ms"),
    "c": Target(1500.0, True, ">= 1500 runs/s"),
    "d": Target(D_OVER_A_TARGET, False, f"<= {D_OVER_A_TARGET}x (a)"),
}

#: Targets over HTTP with our SDK (--http). (h) has none: it is reported for comparison with (g).
HTTP_TARGETS: dict[Workload, Target] = {
    "a": Target(1.0, False, "<= 1.0 ms/step"),
    "b": Target(60.0, False, "<= 60 ms"),
    "c": Target(1000.0, True, ">= 1,000 runs/s"),
    "g": Target(5000.0, True, ">= 5,000 events/s"),
}

#: Targets of the run-lifecycle workloads, by metric.
LIFECYCLE_TARGETS: dict[str, Target] = {
    "rss": Target(150.0, False, "< 150 MB"),
    "max_wake_lateness": Target(2000.0, False, "< 2000 ms"),
    "total": Target(1000.0, False, "< 1000 ms"),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mainspring vs DBOS Transact micro-benchmarks, or with --http Mainspring's "
        "server and SDKs over HTTP vs Restate (see bench/README.md)."
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the records here")
    parser.add_argument(
        "--http",
        action="store_true",
        help="run the HTTP suite instead of the embedded one: (a)-(c) with server and app in "
        "subprocesses, with our SDK, the official inngest SDKs (Python and TypeScript) and "
        "Restate, and event ingestion "
        "through POST /e/ (g: no trigger, h: each event starts a run)",
    )
    parser.add_argument(
        "--only",
        metavar="a,b,c,...",
        help="comma-separated workloads to run (default: all of the suite: "
        f"{','.join(WORKLOADS)}, or {','.join(HTTP_WORKLOADS)} with --http); "
        f"'flow' stands for the flow-control workloads {','.join(FLOW)}",
    )
    parser.add_argument(
        "--skip-peers",
        action="store_true",
        help="run Mainspring only (with --http: our SDK only, no official SDKs, no Restate)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run (a)-(c) on this PostgreSQL server, an admin URL such as "
        "postgresql://postgres@127.0.0.1:5432/test: Mainspring (durability 'full') and DBOS, "
        "each workload on a database created for it and dropped after, and the server's "
        "commit floor (embedded suite only)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="directory for the database files (a fresh temporary directory is made inside it "
        "and removed afterwards; default: the system temp dir). Its filesystem sets fsync cost.",
    )
    args = parser.parse_args(argv)
    suite = HTTP_WORKLOADS if args.http else WORKLOADS
    selected = (
        list(suite) if args.only is None else [w.strip() for w in args.only.split(",") if w.strip()]
    )
    if not args.http and "flow" in selected:
        selected = [w for w in selected if w != "flow"] + list(FLOW)
    unknown = [w for w in selected if w not in suite]
    if unknown or not selected:
        other = (
            ""
            if args.http
            else f" ({','.join(sorted(set(HTTP_WORKLOADS) - set(suite)))} need --http)"
        )
        alias = "" if args.http else " or 'flow'"
        parser.error(f"--only takes a comma-separated subset of {','.join(suite)}{alias}{other}")
    args.workloads = [w for w in suite if w in selected]
    if args.postgres is not None:
        problem = (
            "it is not run with --http" if args.http else postgres_suite.check_url(args.postgres)
        )
        if problem:
            parser.error(f"--postgres: {problem}")
    return args


# --- running -------------------------------------------------------------------------------


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
            attempt(
                results, workload, system, functools.partial(msw.run, workload, durability, workdir)
            )
    return systems


def run_flow(workloads: Sequence[Workload], workdir: Path, results: Results) -> None:
    """Run the flow-control workloads (i)-(k) on Mainspring, durability "full" then "normal"."""
    todo = [w for w in workloads if w in FLOW]
    if not todo:
        return
    durabilities: tuple[Durability, ...] = ("full", "normal")
    print("\nmainspring flow control (embedded engine; durability 'full', then 'normal')")
    try:
        from bench import flow_workloads as flw
        from bench import mainspring_workloads as msw

        flw.check_api()
    except (ImportError, AttributeError) as exc:
        reason = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"  flow control {reason}")
        results.failed = True
        for workload in todo:
            for durability in durabilities:
                results.errors[(workload, f"mainspring-{durability}")] = reason
        return
    for workload in todo:
        for durability in durabilities:
            system = msw.system_name(durability)
            attempt(
                results, workload, system, functools.partial(flw.run, workload, durability, workdir)
            )


def print_flow_table(workloads: Sequence[Workload], results: Results) -> None:
    todo = [w for w in workloads if w in FLOW]
    if not todo:
        return
    try:
        from bench import flow_workloads as flw
    except ImportError:
        return  # run_flow said why
    header, rows = flw.table(results.records, results.errors, todo)
    _print_rows(header, rows)


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
        with dbos_peer.DbosPeer.sqlite(peer_dir) as peer:
            for workload in todo:
                attempt(results, workload, DBOS_SYSTEM, functools.partial(peer.run, workload))
            print(f"  storage: {peer.storage()}")
    except Exception as exc:
        results.failed = True
        print("  DBOS failed to launch or shut down", file=sys.stderr)
        traceback.print_exc()
        for workload in todo:
            results.errors.setdefault((workload, DBOS_SYSTEM), f"{type(exc).__name__}: {exc}")
    return True


def _log(line: str) -> None:
    print(line, flush=True)


def http_unavailable(system: str) -> str | None:
    """Why an official SDK's app cannot run here, or None: like a missing DBOS, neither is a
    requirement, so its column says "unavailable" and the run goes on."""
    if system == OFFICIAL_HTTP and importlib.util.find_spec("inngest") is None:
        return "unavailable: the official `inngest` SDK is not installed (the dev extra)"
    if system == TS_HTTP:
        from bench import http_workloads as hw

        return hw.ts_unavailable()  # node 20+ and npm; `npm ci` of the app if not done yet
    return None


def run_http(
    workloads: Sequence[Workload], workdir: Path, results: Results, *, official: bool
) -> list[str]:
    """Run the HTTP workloads with our SDK (and the official ones, Python and TypeScript);
    returns the systems shown."""
    systems = [OURS_HTTP, *([OFFICIAL_HTTP, TS_HTTP] if official else [])]
    try:
        from bench import http_workloads as hw
    except ImportError as exc:
        reason = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"\nmainspring over HTTP {reason}")
        results.failed = True
        for system in systems:
            for workload in workloads:
                results.errors[(workload, system)] = reason
        return systems
    descriptions = {
        OURS_HTTP: "our SDK's ASGI adapter on uvicorn",
        OFFICIAL_HTTP: "the official inngest SDK's FastAPI adapter on uvicorn",
        TS_HTTP: "the official TypeScript SDK's `inngest/node` serve on Node's http server",
    }
    for system in systems:
        todo = [w for w in workloads if w in hw.SYSTEM_WORKLOADS[system]]
        if not todo:
            continue
        print(
            f"\n{system} (app: {descriptions[system]}, in a subprocess; server: "
            "`mainspring dev --durability normal` in a subprocess, fresh per workload; "
            "driver: this process)"
        )
        missing = http_unavailable(system)
        if missing is not None:
            print(f"  {missing}")
            for workload in todo:
                results.errors[(workload, system)] = missing
            continue
        try:
            with hw.HttpApp(system, workdir, log=_log) as app:
                for workload in todo:
                    attempt(results, workload, system, functools.partial(app.run, workload))
        except Exception as exc:
            results.failed = True
            print(f"  {system}: the app failed to start or stop", file=sys.stderr)
            traceback.print_exc()
            for workload in todo:
                results.errors.setdefault((workload, system), f"{type(exc).__name__}: {exc}")
    return systems


RestateRunner = Callable[..., list[Record]]


def run_restate(workloads: Sequence[Workload], workdir: Path, results: Results) -> bool:
    """Run the Restate peer (bench/peers/restate_peer.py) on (a)-(c), if it is there.

    Whatever goes wrong (no module, Restate not installable, a failed measurement) is printed
    and recorded as the reason in the table; it never changes the exit status.
    Returns whether Restate was attempted at all.
    """
    todo = [w for w in workloads if w in PEER_WORKLOADS]
    if not todo:
        return False
    print("\nrestate (Restate server + restate-sdk service on hypercorn, both on loopback)")
    module_name = "bench.peers.restate_peer"
    try:
        # Imported by name: the peer is optional, and mypy need not see it to check this file.
        module = importlib.import_module(module_name)
        runner: RestateRunner = module.run_restate
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            reason = f"unavailable: no {module_name.replace('.', '/')}.py"
        else:
            reason = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"  Restate {reason}")
        for workload in todo:
            results.errors[(workload, RESTATE_SYSTEM)] = reason
        return True
    # The peer may take the directory for its files; pass --workdir's when it does.
    extra = {"workdir": workdir} if "workdir" in inspect.signature(runner).parameters else {}
    try:
        records = runner(todo, _log, **extra)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"  Restate failed (not counted as a failure of this run): {reason}")
        traceback.print_exc()
        for workload in todo:
            results.errors[(workload, RESTATE_SYSTEM)] = reason.splitlines()[0]
        return True
    results.records.extend(records)
    for workload in todo:
        if results.get(workload, RESTATE_SYSTEM) is None:
            results.errors[(workload, RESTATE_SYSTEM)] = "the Restate peer returned no record"
    return True


# --- reporting -----------------------------------------------------------------------------


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
            row.append(fmt_value(record, results.errors.get((workload, system))))
        peer = results.get(workload, DBOS_SYSTEM)
        if show_dbos:
            if workload in PEER_WORKLOADS:
                row.append(fmt_value(peer, results.errors.get((workload, DBOS_SYSTEM))))
                ratios = [
                    "-" if r is None or peer is None else f"{advantage(r, peer):.1f}x" for r in ours
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
    _print_rows(header, rows)
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


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _print_errors(results: Results) -> None:
    grouped: dict[str, list[str]] = {}
    for (workload, system), error in sorted(results.errors.items()):
        grouped.setdefault(error, []).append(f"({workload}) {system}")
    for error, where in grouped.items():
        print(f"not measured: {', '.join(where)}: {error}")


def print_http_table(
    workloads: Sequence[Workload], systems: Sequence[str], show_restate: bool, results: Results
) -> None:
    """One row per workload: our SDK, the official SDKs (Python, TypeScript), Restate, the
    ratios (> 1 means our SDK is better) and our SDK's target. The official SDKs are held to
    the same targets, for information: they are set for ours."""
    sdks = [s for s in (OFFICIAL_HTTP, TS_HTTP) if s in systems]
    peers = [*sdks, *([RESTATE_SYSTEM] if show_restate else [])]
    header = [
        "workload",
        OURS_HTTP,
        *peers,
        *(f"{short_name(p)}/ours" for p in peers),
        "target (our SDK)",
        f"met? ({' | '.join(['ours', *map(short_name, sdks)])})",
    ]

    def value(workload: Workload, system: str) -> str:
        record = results.get(workload, system)
        shown = fmt_value(record, results.errors.get((workload, system)))
        if workload == "c" and record is not None and record.get("samples"):
            samples = record["samples"]
            shown += f" ({min(samples):,.0f}-{max(samples):,.0f})"
        return shown

    def ratio(ours: Record | None, peer: Record | None) -> str:
        return "-" if ours is None or peer is None else f"{advantage(ours, peer):.2f}x"

    rows: list[list[str]] = []
    for workload in workloads:
        ours = results.get(workload, OURS_HTTP)
        runs_peers = workload in PEER_WORKLOADS
        row = [f"({workload}) {DESCRIPTIONS[workload]}", value(workload, OURS_HTTP)]
        row += [value(workload, p) if runs_peers else "not run" for p in peers]
        row += [ratio(ours, results.get(workload, p)) for p in peers]
        target = HTTP_TARGETS.get(workload)
        row.append("-" if target is None else target.text)
        verdicts = []
        for system in [OURS_HTTP, *(sdks if runs_peers else [])]:
            record = results.get(workload, system)
            if target is None or record is None:
                verdicts.append("-")
            else:
                verdicts.append("yes" if target.met(record["value"]) else "NO")
        row.append(" | ".join(verdicts))
        rows.append(row)
    _print_rows(header, rows)
    if "c" in workloads:
        print(f"(c): median of {REPS_SPREAD} measured runs, (min-max) of those runs.")
    if peers:
        print(
            "ratio > 1 means our SDK over HTTP is better: peer/ours for times, ours/peer for "
            "throughput."
        )
    print_cpu_table(workloads, [*systems, *([RESTATE_SYSTEM] if show_restate else [])], results)
    _print_errors(results)


def short_name(system: str) -> str:
    """A peer's name in the ratio and verdict headers: ``inngest-ts-http`` is ``inngest-ts``."""
    return system.removesuffix("-http")


def cpu_cell(record: Record | None) -> str:
    """``8% / 83% / 55%``: the driver's, the server's, then the app's (or Restate's
    service's) CPU during the timed runs, each as a share of one core."""
    if record is None or not record.get("cpu"):
        return "-"
    return " / ".join(f"{share:.0%}" for share in record["cpu"].values())


def print_cpu_table(
    workloads: Sequence[Workload], systems: Sequence[str], results: Results
) -> None:
    """Who used the CPU while the clock ran: the driver (this process, which sends the
    requests) against the servers it measures."""
    rows = [
        [f"({w}) {DESCRIPTIONS[w]}", *(cpu_cell(results.get(w, s)) for s in systems)]
        for w in workloads
    ]
    if all(cell == "-" for row in rows for cell in row[1:]):
        return
    _print_rows(["cpu while timed: driver / server / app or service", *systems], rows)
    print(
        "each a share of one core over the measured runs (the machine has "
        f"{os.cpu_count()}); the driver is this process."
    )


def main_http(args: argparse.Namespace) -> int:
    workloads: list[Workload] = args.workloads
    with tempfile.TemporaryDirectory(prefix="mainspring-bench-http-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print_machine_facts(workdir, http=True)
        print(
            f"method: median of {REPS} measured runs after {WARMUP} warm-up ((c): "
            f"{REPS_SPREAD} measured runs); cpu: of the driver, the server and the app while "
            "timed"
        )
        print_pace(workdir, "before")
        results = Results()
        systems = run_http(workloads, workdir, results, official=not args.skip_peers)
        show_restate = not args.skip_peers and run_restate(workloads, workdir, results)
        print_pace(workdir, "after")
    print_http_table(workloads, systems, show_restate, results)
    _write_json(args.json, results)
    return 1 if results.failed else 0


def _write_json(path: Path | None, results: Results) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results.records, indent=2) + "\n")
        print(f"\nwrote {len(results.records)} records to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.http:
        return main_http(args)
    workloads: list[Workload] = args.workloads
    with tempfile.TemporaryDirectory(prefix="mainspring-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print_machine_facts(workdir)
        print(f"method: median of {REPS} measured runs after {WARMUP} warm-up")
        print_pace(workdir, "before")
        results = Results()
        core = [w for w in workloads if w not in LIFECYCLE and w not in FLOW]
        ms_systems = run_mainspring(core, workdir, results)
        show_dbos = not args.skip_peers and run_dbos(core, workdir, results)
        run_lifecycle(workloads, workdir, results)
        run_flow(workloads, workdir, results)
        print_pace(workdir, "after")
    if args.postgres is not None:  # bench/postgres_suite.py: (a)-(c) on the PostgreSQL server
        postgres_suite.run(args.postgres, workloads, results, peers=not args.skip_peers)
    if core:
        print_table(core, ms_systems, show_dbos, results)
    print_lifecycle_table(results)
    print_flow_table(workloads, results)
    if args.postgres is not None:
        header, rows, notes = postgres_suite.table(workloads, results, peers=not args.skip_peers)
        if rows:
            _print_rows(header, rows)
            print("\n".join(notes))
    _print_errors(results)
    _write_json(args.json, results)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
