"""Workloads (a), (b) and (c) on DBOS Transact (pip `dbos==3.4.0`), in this process.

The definitions follow ../shared/peers/dbos/bench_dbos.py: a sync workflow of sync steps for (a),
an async workflow gathering async steps for (b), and `DBOS.start_workflow` called back to back,
then every handle's result awaited, for (c). The system database is either a SQLite file in a
directory of the caller's choosing (`DbosPeer.sqlite`), left in DBOS's own settings (SQLite
defaults: rollback journal, synchronous=FULL), or a PostgreSQL database the caller made
(`DbosPeer(url, system)`, used by bench/postgres_suite.py), in the server's settings.

DBOS keeps one runtime per process, and its decorators register into a process-global registry
when this module is imported. So only one `DbosPeer` may be open at a time; each is launched
once and destroyed once. `DBOS.destroy()` keeps that registry, and a new `DBOS(config=...)` then
`DBOS.launch()` in the same process works with another system database (checked with dbos
3.4.0: SQLite first, then PostgreSQL), so the PostgreSQL peer runs in the bench process too.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sqlite3
from pathlib import Path
from types import TracebackType

import psycopg
from dbos import DBOS, DBOSConfig

from bench.common import (
    N_FAN,
    N_RUNS,
    N_SEQ,
    Record,
    Workload,
    measure,
    measure_async,
    per_step_record,
    throughput_record,
    total_record,
)

SYSTEM = "dbos-sqlite"


@DBOS.step()
def sync_step(i: int) -> int:
    return i


@DBOS.step()
async def async_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_seq(n: int) -> int:
    total = 0
    for i in range(n):
        total += sync_step(i)
    return total


@DBOS.workflow()
async def wf_fan(n: int) -> int:
    results = await asyncio.gather(*(async_step(i) for i in range(n)))
    return sum(results)


@DBOS.workflow()
def wf_one(i: int) -> int:
    return sync_step(i)


def version() -> str:
    return importlib.metadata.version("dbos")


def _check(got: int, want: int, what: str) -> None:
    if got != want:
        raise RuntimeError(f"DBOS {what}: result {got}, expected {want}")


class DbosPeer:
    """DBOS launched on one system database; its records are filed under `system`."""

    def __init__(self, system_database_url: str, system: str) -> None:
        self.system = system
        self._url = system_database_url
        self._config: DBOSConfig = {
            "name": "bench",
            "system_database_url": system_database_url,
            "log_level": "WARNING",
        }

    @classmethod
    def sqlite(cls, workdir: Path) -> DbosPeer:
        """On a SQLite system database at `<workdir>/dbos-sys.sqlite`."""
        return cls(f"sqlite:///{workdir / 'dbos-sys.sqlite'}", SYSTEM)

    def __enter__(self) -> DbosPeer:
        DBOS(config=self._config)
        try:
            DBOS.launch()
        except BaseException:
            DBOS.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        DBOS.destroy()

    def storage(self) -> str:
        """The durability settings DBOS's system database ended up with."""
        if not self._url.startswith("sqlite:///"):
            shown: list[str] = []
            with psycopg.connect(self._url) as conn:
                for name in ("synchronous_commit", "fsync"):
                    row = conn.execute(f"SHOW {name}").fetchone()
                    shown.append(f"{name}={row[0] if row else '?'}")
            return ", ".join(shown) + " (the server's settings; DBOS sets neither)"
        con = sqlite3.connect(self._url.removeprefix("sqlite:///"))
        try:
            journal = con.execute("PRAGMA journal_mode").fetchone()[0]
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                con.execute("PRAGMA synchronous").fetchone()[0], "?"
            )
        finally:
            con.close()
        return f"journal_mode={journal}, synchronous={sync} (SQLite defaults; DBOS sets neither)"

    def run(self, workload: Workload) -> Record:
        if workload == "a":
            return self._seq()
        if workload == "b":
            return self._fan()
        if workload == "c":
            return self._many()
        raise ValueError(f"workload {workload!r} is not run on DBOS")

    def _seq(self) -> Record:
        def run_seq(n: int) -> None:
            _check(wf_seq(n), sum(range(n)), f"{n}-step workflow")

        empty = measure(lambda: run_seq(0))
        full = measure(lambda: run_seq(N_SEQ))
        print(f"  {self.system} a: empty run {empty.describe()}")
        print(f"  {self.system} a: {N_SEQ}-step run {full.describe()}")
        return per_step_record("a", self.system, empty, full, N_SEQ)

    def _fan(self) -> Record:
        async def run_fan() -> None:
            _check(await wf_fan(N_FAN), sum(range(N_FAN)), "fan-out workflow")

        sample = asyncio.run(measure_async(run_fan))
        print(f"  {self.system} b: fan-out {N_FAN} {sample.describe()}")
        return total_record("b", self.system, sample)

    def _many(self) -> Record:
        def run_many() -> None:
            handles = [DBOS.start_workflow(wf_one, i) for i in range(N_RUNS)]
            _check(sum(h.get_result() for h in handles), sum(range(N_RUNS)), "one-step runs")

        sample = measure(run_many)
        print(f"  {self.system} c: {N_RUNS} one-step runs {sample.describe()}")
        return throughput_record("c", self.system, sample, N_RUNS)
