"""(h) on a cluster: events each starting a one-step run, through 1, 2 and 3 server processes
sharing one PostgreSQL database.

    .venv/bin/python -m bench.cluster_throughput postgresql://postgres@127.0.0.1:5432/test
        [--processes 1,2,3] [--durability full]

For each process count: a new database (dropped afterwards), that many ``mainspring dev``
servers running this module's ``one`` function in process, and N_EVENTS_TRIGGERED events
posted in batches of EVENT_BATCH to the servers in turn (one sender per server, at once).
Timed: from the first POST until the database shows every run completed. The figure is
runs per second; on a machine with fewer cores than processes, more processes share the
same CPU and the figure says what the coordination costs rather than what it scales to.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time

import httpx
import orjson
import psycopg

import mainspring
from bench.cluster_support import scratch_database, start_server, stop_servers
from bench.common import EVENT_BATCH, N_EVENTS_TRIGGERED
from bench.functions import define

#: What the servers run (``mainspring dev bench.cluster_throughput:functions``).
client = mainspring.Client(app_id="bench-cluster", is_production=False)
functions = define(client)


def _send(base: str, bodies: list[bytes]) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for body in bodies:
            answer = http.post("/e/key", content=body, headers={"content-type": "application/json"})
            answer.raise_for_status()


def measure(admin_url: str, processes: int, durability: str) -> float:
    """Runs per second with ``processes`` servers; each run checked completed."""
    bodies = [
        orjson.dumps([{"name": "bench/one", "data": {"i": i}} for i in range(s, s + EVENT_BATCH)])
        for s in range(0, N_EVENTS_TRIGGERED, EVENT_BATCH)
    ]
    with scratch_database(admin_url, "bench_cluster") as url:
        servers: list[subprocess.Popen[bytes]] = []
        try:
            bases = []
            for _ in range(processes):
                functions = "bench.cluster_throughput:functions"
                proc, base = start_server(functions, url, "--durability", durability)
                servers.append(proc)
                bases.append(base)
            with psycopg.connect(url, autocommit=True) as db:
                senders = [
                    threading.Thread(target=_send, args=(base, bodies[n::processes]))
                    for n, base in enumerate(bases)
                ]
                started = time.perf_counter()
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join()
                while True:
                    row = db.execute(
                        "SELECT count(*) FROM runs WHERE status = 'Completed'"
                    ).fetchone()
                    if row is not None and row[0] >= N_EVENTS_TRIGGERED:
                        break
                    if time.perf_counter() - started > 300:
                        raise RuntimeError(f"only {row} runs completed in 300 s")
                    time.sleep(0.02)
                elapsed = time.perf_counter() - started
        finally:
            stop_servers(servers)
    return N_EVENTS_TRIGGERED / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="an admin URL, e.g. postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--processes", default="1,2,3", help="comma-separated process counts")
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    print(
        f"(h) {N_EVENTS_TRIGGERED:,} events in batches of {EVENT_BATCH}, each starting a "
        f"one-step run, durability {args.durability!r}"
    )
    for count in counts:
        rate = measure(args.server, count, args.durability)
        print(f"  {count} process{'es' if count > 1 else ''}: {rate:,.0f} runs/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
