"""What an idle cluster costs: N server processes on one PostgreSQL database, no work.

    .venv/bin/python -m bench.idle_cluster postgresql://postgres@127.0.0.1:5432/test
        [--processes 3] [--seconds 60]

Starts ``mainspring dev`` with the seed's example functions N times on a new database
(dropped afterwards), lets them settle, then for ``--seconds`` counts the statements the
database ran for them (``pg_stat_database``'s transactions: every statement of the engine
outside a unit is one, a unit's transaction is one) and the CPU time each process used
(``/proc/PID/stat``). The issue's target: under 1% CPU and a handful of queries a second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import psycopg

from bench.cluster_support import scratch_database, start_server, stop_servers

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _transactions(admin: psycopg.Connection[tuple[object, ...]], name: str) -> int:
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="an admin URL, e.g. postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with (
        scratch_database(args.server, "bench_idle") as url,
        psycopg.connect(args.server, autocommit=True) as admin,
    ):
        name = url.rsplit("/", 1)[1]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(args.processes):
                procs.append(start_server("examples.seed:functions", url)[0])
            time.sleep(5)  # start-up work (migrations, syncs, first claims) settles
            before_tx = _transactions(admin, name)
            before_cpu = [_cpu_seconds(proc.pid) for proc in procs]
            time.sleep(args.seconds)
            after_tx = _transactions(admin, name)
            after_cpu = [_cpu_seconds(proc.pid) for proc in procs]
        finally:
            stop_servers(procs)
    queries = after_tx - before_tx
    print(f"{args.processes} idle processes for {args.seconds:.0f} s on one PostgreSQL database")
    print(f"  database transactions: {queries} ({queries / args.seconds:.2f}/s in all)")
    for number, (start, end) in enumerate(zip(before_cpu, after_cpu, strict=True)):
        share = (end - start) / args.seconds * 100
        print(f"  process {number}: {end - start:.3f} s CPU ({share:.2f}% of one core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
