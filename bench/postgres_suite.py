"""(a)-(c) on PostgreSQL (`run.py --postgres URL`): Mainspring's engine with durability "full"
and DBOS Transact with a PostgreSQL system database, on the same server, and that server's
commit floor.

`URL` is an admin URL (`postgresql://postgres@127.0.0.1:5432/test`): a role allowed to create
databases, and any database to connect to for doing so. Every measurement gets a database of
its own, created with a random name (`bench_pg_<what>_<hex>`) and dropped with
`DROP DATABASE ... WITH (FORCE)` once it is over, whatever happened. Only databases made here
are ever dropped.

- `mainspring-pg`: `bench.mainspring_workloads.run_on` with `database=` the new database's URL
  and `durability="full"` (`synchronous_commit = on`); the engine makes its schema at start,
  before any clock runs. One database per workload, as on SQLite.
- `dbos-postgres`: `bench.peers.dbos_peer.DbosPeer` with `system_database_url=` the new
  database's URL, in the server's settings. DBOS is launched and destroyed once per workload,
  each time on a database of its own, in this process (`dbos_peer.py` says why that works).
- `postgres-floor`: FLOOR_COMMITS single-row INSERTs into a plain table, in autocommit with
  `synchronous_commit = on`, so each is one statement and one durable commit (a WAL flush);
  each is timed on its own, and the median is the floor. A workload that makes each step
  durable before the next starts cannot go below it per step.

The measurement method is the suite's (bench/common.py): median of REPS runs after WARMUP.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import statistics
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Final
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from bench.common import (
    DESCRIPTIONS,
    Record,
    Results,
    Target,
    Workload,
    advantage,
    attempt,
    fmt_value,
)

MAINSPRING_PG: Final = "mainspring-pg"
DBOS_PG: Final = "dbos-postgres"
FLOOR: Final = "postgres-floor"
PG_WORKLOADS: Final[tuple[Workload, ...]] = ("a", "b", "c")

#: Mainspring's targets on PostgreSQL (durability "full"), from the PostgreSQL backend's issue.
PG_TARGETS: Final[dict[Workload, Target]] = {
    "a": Target(0.3, False, "<= 0.3 ms/step"),
    "b": Target(40.0, False, "<= 40 ms"),
    "c": Target(800.0, True, ">= 800 runs/s"),
}

FLOOR_WARMUP: Final = 50
FLOOR_COMMITS: Final = 500
FLOOR_PAYLOAD: Final = b"x" * 100
#: Server settings printed in the section's header: they decide what a commit costs.
SETTINGS: Final = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")


def check_url(url: str) -> str | None:
    """Why `url` cannot be the admin URL, or None if it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        return "give a postgresql://user@host:port/dbname URL"
    return None


def describe(url: str) -> str:
    """Host and port of `url`, never its credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` with its database replaced by `name` (user, host and query kept)."""
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def fresh_database(admin_url: str, what: str) -> Iterator[str]:
    """Create a database with a random name on the server; yield its URL; drop it after."""
    name = f"bench_pg_{what}_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def server_facts(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        shown = [f"PostgreSQL {version[0] if version else '?'} at {describe(admin_url)}"]
        for name in SETTINGS:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            shown.append(f"{name}={row[0] if row else '?'}")
    return ", ".join(shown)


def commit_floor(admin_url: str) -> float:
    """Median seconds of one single-statement durable commit (see the module's docstring)."""
    times: list[float] = []
    with (
        fresh_database(admin_url, "floor") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        conn.execute("SET synchronous_commit = on")
        conn.execute("CREATE TABLE floor (id bigserial PRIMARY KEY, k text, v bytea)")
        for i in range(FLOOR_WARMUP + FLOOR_COMMITS):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO floor (k, v) VALUES (%s, %s)", (f"step-{i}", FLOOR_PAYLOAD))
            if i >= FLOOR_WARMUP:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _mainspring(admin_url: str, workload: Workload) -> Record:
    from bench import mainspring_workloads as msw

    with fresh_database(admin_url, f"ms_{workload}") as url:
        return msw.run_on(workload, "full", url, MAINSPRING_PG)


def _dbos(admin_url: str, workload: Workload, show_storage: bool) -> Record:
    from bench.peers import dbos_peer

    with (
        fresh_database(admin_url, f"dbos_{workload}") as url,
        dbos_peer.DbosPeer(url, DBOS_PG) as peer,
    ):
        record = peer.run(workload)
        if show_storage:
            print(f"  storage: {peer.storage()}")
    return record


def _unavailable(results: Results, todo: Sequence[Workload], system: str, exc: Exception) -> None:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"unavailable: {type(exc).__name__}: {first_line}"
    print(f"  {system} {reason}")
    for workload in todo:
        results.errors[(workload, system)] = reason


def run(admin_url: str, workloads: Sequence[Workload], results: Results, *, peers: bool) -> None:
    """Run (a)-(c) of `workloads` on Mainspring and (with `peers`) DBOS, then the floor.

    A failed Mainspring or DBOS measurement fails the run (as in the embedded suite); a missing
    `dbos` or a failed floor does not.
    """
    todo = [w for w in workloads if w in PG_WORKLOADS]
    if not todo:
        return
    print(f"\npostgresql (server at {describe(admin_url)}; a new database for every measurement)")
    try:
        print(f"  {server_facts(admin_url)}")
    except psycopg.Error as exc:
        results.failed = True
        for system in (MAINSPRING_PG, *([DBOS_PG] if peers else []), FLOOR):
            _unavailable(results, todo, system, exc)
        return
    print(f"\n{MAINSPRING_PG} (embedded engine on PostgreSQL, durability 'full')")
    try:
        from bench import mainspring_workloads as msw

        msw.check_api()
    except (ImportError, AttributeError) as exc:
        results.failed = True
        _unavailable(results, todo, MAINSPRING_PG, exc)
    else:
        for workload in todo:
            attempt(
                results,
                workload,
                MAINSPRING_PG,
                functools.partial(_mainspring, admin_url, workload),
            )
    if peers:
        print(f"\n{DBOS_PG} (DBOS Transact, in-process, PostgreSQL system database)")
        try:
            from bench.peers import dbos_peer
        except ImportError as exc:
            _unavailable(results, todo, DBOS_PG, exc)
        else:
            print(f"  version {dbos_peer.version()}")
            for i, workload in enumerate(todo):
                fn = functools.partial(_dbos, admin_url, workload, i == 0)
                attempt(results, workload, DBOS_PG, fn)
    print(f"\n{FLOOR} (single-statement durable commit, autocommit, synchronous_commit=on)")
    try:
        floor_ms = commit_floor(admin_url) * 1e3
    except psycopg.Error as exc:
        print("  the floor was not measured (not counted as a failure of this run)")
        traceback.print_exc()
        for workload in todo:
            results.errors[(workload, FLOOR)] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return
    print(f"  median of {FLOOR_COMMITS} commits after {FLOOR_WARMUP}: {floor_ms:.3f} ms")
    results.records.extend(
        Record(workload=w, system=FLOOR, metric="commit_latency", value=floor_ms, unit="ms")
        for w in todo
    )


def table(
    workloads: Sequence[Workload], results: Results, *, peers: bool
) -> tuple[list[str], list[list[str]], list[str]]:
    """The header, rows and notes of the PostgreSQL table (no rows if no (a)-(c) ran)."""
    header = ["workload", MAINSPRING_PG]
    if peers:
        header += [DBOS_PG, "ratio dbos/mainspring"]
    header += ["floor (1 durable commit)", "target (mainspring-pg)", "met?"]
    rows: list[list[str]] = []
    for workload in (w for w in workloads if w in PG_WORKLOADS):

        def value(system: str, workload: Workload = workload) -> str:
            return fmt_value(results.get(workload, system), results.errors.get((workload, system)))

        ours = results.get(workload, MAINSPRING_PG)
        row = [f"({workload}) {DESCRIPTIONS[workload]}", value(MAINSPRING_PG)]
        if peers:
            peer = results.get(workload, DBOS_PG)
            ratio = "-" if ours is None or peer is None else f"{advantage(ours, peer):.1f}x"
            row += [value(DBOS_PG), ratio]
        floor = results.get(workload, FLOOR)
        row.append(value(FLOOR) if floor is None else f"{floor['value']:.3f} ms/commit")
        target = PG_TARGETS[workload]
        row += [
            target.text,
            "-" if ours is None else ("yes" if target.met(ours["value"]) else "NO"),
        ]
        rows.append(row)
    notes = [
        f"floor: median of {FLOOR_COMMITS} single-row INSERTs, each its own durable commit "
        "(autocommit, synchronous_commit=on), on a database of their own on the same server."
    ]
    if peers:
        notes.insert(
            0,
            "ratio > 1 means Mainspring is better: dbos/mainspring for times, "
            "mainspring/dbos for (c) throughput.",
        )
    return header, rows, notes
