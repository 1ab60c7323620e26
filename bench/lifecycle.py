"""Run-lifecycle workloads, each in a process of its own (so RSS is the engine's own).

    python -m bench.lifecycle e --workdir DIR   # 10,000 runs sleeping at once
    python -m bench.lifecycle f --workdir DIR   # 1,000 waiting runs resumed by 1,000 events

Prints one JSON list of records on its last line. Durability "normal" (SIGKILL-safe).

(e) starts N_SLEEPERS runs that each sleep SLEEP_S seconds, measures the process RSS while
all of them sleep, and how late each sleep's end was recorded after its due time.
(f) parks N_WAITERS runs in wait_for_event (matched on an id), then sends one matching
event per run, back to back, and times until every run has completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Final, cast

import mainspring
from mainspring.engine.store.sqlite import SQLiteStore

N_SLEEPERS: Final = 10_000
SLEEP_S: Final = 5
N_WAITERS: Final = 1_000
BATCH: Final = 500


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the engine did not get there in time")
        await asyncio.sleep(0.01)


async def sleepers(workdir: Path) -> list[dict[str, Any]]:
    client = mainspring.Client(app_id="bench-sleep")

    @client.create_function(fn_id="sleeper", trigger=mainspring.TriggerEvent(event="bench/nap"))
    async def sleeper(ctx: mainspring.Context) -> int:
        await ctx.step.sleep("nap", SLEEP_S * 1000)
        return 1

    database = workdir / "sleepers.db"
    async with mainspring.Engine(
        client, [sleeper], database=database, durability="normal"
    ) as engine:
        ids: list[str] = []
        for start in range(0, N_SLEEPERS, BATCH):
            count = min(BATCH, N_SLEEPERS - start)
            ids += await engine.send([mainspring.Event(name="bench/nap") for _ in range(count)])
        reader = cast(SQLiteStore, engine._store)._reader()

        def all_asleep() -> bool:
            # Asleep now, or already woken (the first may wake before the last sleeps).
            row = reader.execute(
                "SELECT (SELECT count(*) FROM jobs WHERE kind = 'sleep') "
                "+ (SELECT count(*) FROM steps WHERE op = 'Sleep')"
            ).fetchone()
            return bool(row[0] >= N_SLEEPERS)

        await _wait_until(all_asleep, 60)
        rss = _rss_mb()
        runs = [run for event_id in ids for run in await engine.runs(event_id)]
        done = await asyncio.gather(*(engine.wait(run.id, timeout=120) for run in runs))
        if any(d.status != "Completed" for d in done):
            raise RuntimeError("some sleeping runs did not complete")
        late = sorted(
            row[0]
            for row in reader.execute(
                "SELECT ended_at - started_at - ? FROM steps WHERE op = 'Sleep'", (SLEEP_S * 1000,)
            )
        )
    print(
        f"  (e) {N_SLEEPERS:,} runs asleep at once: RSS {rss:.0f} MB; sleep ends recorded "
        f"late by median {late[len(late) // 2]} ms, max {late[-1]} ms",
        flush=True,
    )
    return [
        {
            "workload": "e",
            "system": "mainspring-normal",
            "metric": "rss",
            "value": rss,
            "unit": "MB",
        },
        {
            "workload": "e",
            "system": "mainspring-normal",
            "metric": "max_wake_lateness",
            "value": float(late[-1]),
            "unit": "ms",
        },
    ]


async def waiters(workdir: Path) -> list[dict[str, Any]]:
    client = mainspring.Client(app_id="bench-wait")

    @client.create_function(fn_id="waiter", trigger=mainspring.TriggerEvent(event="bench/ask"))
    async def waiter(ctx: mainspring.Context) -> object:
        reply = await ctx.step.wait_for_event(
            "reply", event="bench/answer", if_exp="event.data.id == async.data.id", timeout=600_000
        )
        return None if reply is None else reply.data["id"]

    database = workdir / "waiters.db"
    async with mainspring.Engine(
        client, [waiter], database=database, durability="normal"
    ) as engine:
        ids: list[str] = []
        for start in range(0, N_WAITERS, BATCH):
            ids += await engine.send(
                [
                    mainspring.Event(name="bench/ask", data={"id": i})
                    for i in range(start, min(start + BATCH, N_WAITERS))
                ]
            )
        runs = [run for event_id in ids for run in await engine.runs(event_id)]
        reader = cast(SQLiteStore, engine._store)._reader()

        def all_waiting() -> bool:
            return bool(reader.execute("SELECT count(*) FROM pauses").fetchone()[0] >= N_WAITERS)

        await _wait_until(all_waiting, 60)
        started = time.perf_counter()
        for i in range(N_WAITERS):
            await engine.send(mainspring.Event(name="bench/answer", data={"id": i}))
        done = await asyncio.gather(*(engine.wait(run.id, timeout=60) for run in runs))
        elapsed = time.perf_counter() - started
        if sorted(d.output for d in done) != list(range(N_WAITERS)):
            raise RuntimeError("some waiting runs did not get their own event")
    print(
        f"  (f) {N_WAITERS:,} waiting runs resumed by {N_WAITERS:,} events sent one by one: "
        f"{elapsed * 1000:.0f} ms until all completed",
        flush=True,
    )
    return [
        {
            "workload": "f",
            "system": "mainspring-normal",
            "metric": "total",
            "value": elapsed * 1000,
            "unit": "ms",
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["e", "f"])
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    run = sleepers if args.workload == "e" else waiters
    records = asyncio.run(run(args.workdir))
    print(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
