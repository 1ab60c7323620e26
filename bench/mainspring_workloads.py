"""Workloads (a)-(d) on Mainspring's embedded engine.

Each workload gets its own engine on a fresh database: a SQLite file (`run`), or a database
the caller made, such as a new PostgreSQL database (`run_on`, used by `postgres_suite.py`).
The engine is started before the clock runs and stopped after. One timed run is:
`engine.send` the triggering event, look up the run it started, and `engine.wait` until that
run completes (its output is checked).

For (c) the 200 events are sent with 200 `engine.send` calls back to back (as the peer starts 200
workflows with 200 calls), then each event's run is looked up and all are awaited together.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final, Literal

import mainspring
from bench.common import (
    N_FAN,
    N_LONG,
    N_RUNS,
    N_SEQ,
    Record,
    Workload,
    measure_async,
    per_step_record,
    throughput_record,
    total_record,
)
from bench.functions import define

Durability = Literal["full", "normal"]
DURABILITIES: Final[tuple[Durability, ...]] = ("full", "normal")

WAIT_TIMEOUT_S: Final = 60.0
LONG_WAIT_TIMEOUT_S: Final = 600.0
RUN_LOOKUP_TIMEOUT_S: Final = 10.0

# The public names the workloads use; checked up front so a missing API is reported once.
REQUIRED_API: Final = ("Client", "Context", "Engine", "Event", "TriggerEvent")


def system_name(durability: Durability) -> str:
    return f"mainspring-{durability}"


def check_api() -> None:
    """Raise AttributeError if the engine API the workloads use is not there (yet)."""
    missing = [name for name in REQUIRED_API if not hasattr(mainspring, name)]
    if missing:
        where = getattr(mainspring, "__file__", None) or list(getattr(mainspring, "__path__", []))
        raise AttributeError(f"module 'mainspring' ({where}) has no {', '.join(missing)}")


def version() -> str:
    try:
        return importlib.metadata.version("mainspring")
    except importlib.metadata.PackageNotFoundError:
        return "not installed (imported from source)"


def make_engine(database: Path | str, durability: Durability) -> mainspring.Engine:
    """A fresh client with the three benchmark functions, on an engine over `database` (a
    SQLite file, or a `postgresql://` URL)."""
    client = mainspring.Client(app_id="bench")
    return mainspring.Engine(client, define(client), database=str(database), durability=durability)


async def _run_id(engine: mainspring.Engine, event_id: str) -> str:
    """The id of the one run `event_id` started (retrying briefly if it is not recorded yet)."""
    deadline = time.monotonic() + RUN_LOOKUP_TIMEOUT_S
    polls = 0
    while True:
        runs = await engine.runs(event_id)
        if len(runs) == 1:
            return runs[0].id
        if len(runs) > 1:
            raise RuntimeError(f"event {event_id} started {len(runs)} runs, expected 1")
        if time.monotonic() > deadline:
            raise RuntimeError(f"event {event_id} started no run within {RUN_LOOKUP_TIMEOUT_S}s")
        polls += 1
        await asyncio.sleep(0 if polls < 100 else 0.001)


def _check_done(done: Any, want: int, what: str) -> None:
    if done.status != "Completed" or done.output != want:
        raise RuntimeError(
            f"Mainspring {what}: status {done.status!r}, output {done.output!r}; "
            f"expected 'Completed', {want!r}"
        )


async def _start_and_wait(
    engine: mainspring.Engine, event: mainspring.Event, want: int, what: str, wait_timeout: float
) -> None:
    [event_id] = await engine.send(event)
    run_id = await _run_id(engine, event_id)
    _check_done(await engine.wait(run_id, timeout=wait_timeout), want, what)


async def _seq(
    workload: Workload,
    database: Path | str,
    durability: Durability,
    system: str,
    steps: int,
    wait_timeout: float,
) -> Record:
    async with make_engine(database, durability) as engine:

        def run_seq(n: int) -> Awaitable[None]:
            event = mainspring.Event(name="bench/seq", data={"n": n})
            return _start_and_wait(engine, event, sum(range(n)), f"{n}-step run", wait_timeout)

        empty = await measure_async(lambda: run_seq(0))
        print(f"  {system} {workload}: empty run {empty.describe()}", flush=True)
        full = await measure_async(lambda: run_seq(steps))
        print(f"  {system} {workload}: {steps:,}-step run {full.describe()}", flush=True)
    return per_step_record(workload, system, empty, full, steps)


async def _fan(database: Path | str, durability: Durability, system: str) -> Record:
    async with make_engine(database, durability) as engine:

        async def run_fan() -> None:
            event = mainspring.Event(name="bench/fan", data={"n": N_FAN})
            await _start_and_wait(engine, event, sum(range(N_FAN)), "fan-out run", WAIT_TIMEOUT_S)

        sample = await measure_async(run_fan)
        print(f"  {system} b: fan-out {N_FAN} {sample.describe()}", flush=True)
    return total_record("b", system, sample)


async def _many(database: Path | str, durability: Durability, system: str) -> Record:
    async with make_engine(database, durability) as engine:

        async def run_many() -> None:
            event_ids: list[str] = []
            for i in range(N_RUNS):
                event_ids += await engine.send(mainspring.Event(name="bench/one", data={"i": i}))
            run_ids = [await _run_id(engine, event_id) for event_id in event_ids]
            done = await asyncio.gather(
                *(engine.wait(run_id, timeout=WAIT_TIMEOUT_S) for run_id in run_ids)
            )
            for i, d in enumerate(done):
                _check_done(d, i, "one-step run")

        sample = await measure_async(run_many)
        print(f"  {system} c: {N_RUNS} one-step runs {sample.describe()}", flush=True)
    return throughput_record("c", system, sample, N_RUNS)


def run(workload: Workload, durability: Durability, workdir: Path) -> Record:
    """Run one workload on a fresh database file in `workdir`; returns its record."""
    database = workdir / f"mainspring-{workload}-{durability}.db"
    if database.exists():
        raise FileExistsError(f"{database} exists; each workload needs a fresh database")
    return run_on(workload, durability, database, system_name(durability))


def run_on(workload: Workload, durability: Durability, database: Path | str, system: str) -> Record:
    """Run one workload on `database` (a SQLite file or a `postgresql://` URL), which the
    caller made fresh for it; the record is filed under `system`."""
    if workload == "a":
        return asyncio.run(_seq("a", database, durability, system, N_SEQ, WAIT_TIMEOUT_S))
    if workload == "b":
        return asyncio.run(_fan(database, durability, system))
    if workload == "c":
        return asyncio.run(_many(database, durability, system))
    return asyncio.run(_seq("d", database, durability, system, N_LONG, LONG_WAIT_TIMEOUT_S))
