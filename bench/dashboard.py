#!/usr/bin/env python3
"""The dashboard's pages on a large database (issue 11's benchmark).

    python bench/dashboard.py [--runs 100000] [--steps 1000] [--part all|runs|run|live]

Fills a database with ``--runs`` one-step runs and one run of ``--steps`` steps, serves the
dashboard on uvicorn over loopback, and prints, for the runs page (first page, a status
filter, a later page, a CEL filter that most runs match and one that one run matches) and
for the run pages (the long run, its live fragment, which an open page fetches again on
every change of the run, and a one-step run), the median
and max time to answer (10 requests each, after one warm-up); then how long a live update
takes to reach an open runs page: from the send of an event to the server-sent event naming
its run (the run's one step is recorded in between). ``--part`` measures only the runs
pages, the run pages or the live update. Targets: under 100 ms per page, under
500 ms per live update.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import mainspring  # noqa: E402
from mainspring.server.app import create_app  # noqa: E402

REQUESTS = 10
LIVE_SAMPLES = 10


def build(steps: int) -> tuple[mainspring.Client, list[mainspring.Function[object]]]:
    client = mainspring.Client(app_id="bench-dash")

    @client.create_function(fn_id="one", trigger=mainspring.TriggerEvent(event="one"))
    async def one(ctx: mainspring.Context) -> object:
        return await ctx.step.run("only", lambda: ctx.event.data.get("n"))

    @client.create_function(fn_id="long", trigger=mainspring.TriggerEvent(event="long"))
    async def long(ctx: mainspring.Context) -> object:
        total = 0
        for i in range(steps):
            total += await ctx.step.run(f"s{i}", int, i)
        return total

    return client, [one, long]


async def fill(engine: mainspring.Engine, runs: int) -> str:
    started = time.perf_counter()
    for start in range(0, runs, 1000):
        count = min(1000, runs - start)
        await engine.send(
            [mainspring.Event(name="one", data={"n": start + i}) for i in range(count)]
        )
    [long_event] = await engine.send(mainspring.Event(name="long"))
    [long_run] = await engine.runs(long_event)
    await engine.wait(long_run.id, timeout=600)
    unfinished = [mainspring.RunStatus.QUEUED, mainspring.RunStatus.RUNNING]
    await until(lambda: _none(engine.list_runs(statuses=unfinished, limit=1)), 0.2)
    print(f"filled: {runs:,} one-step runs and 1 long run in {time.perf_counter() - started:.1f} s")
    return long_run.id


async def until(check: Callable[[], Awaitable[bool]], pause: float) -> None:
    while True:
        if await check():
            return
        await asyncio.sleep(pause)


async def _none(found: Awaitable[list[mainspring.Run]]) -> bool:
    return not await found


async def _true(value: bool) -> bool:
    return value


async def timed(http: httpx.AsyncClient, path: str) -> tuple[float, float]:
    await http.get(path)  # warm-up
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = await http.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
    return statistics.median(times), max(times)


async def live_latency(http: httpx.AsyncClient, engine: mainspring.Engine) -> list[float]:
    """From an event's send to the server-sent event naming its run, on an open stream."""
    samples: list[float] = []
    async with http.stream("GET", "/dashboard/events/stream") as stream:
        lines = stream.aiter_lines()
        await anext(lines)  # connected
        for n in range(LIVE_SAMPLES):
            sent = time.perf_counter()
            [event_id] = await engine.send(mainspring.Event(name="one", data={"n": -n}))
            [run] = await engine.runs(event_id)
            async for line in lines:
                if line.startswith("data:") and run.id in line:
                    samples.append((time.perf_counter() - sent) * 1000)
                    break
            await asyncio.sleep(0.05)
    return samples


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def main(runs: int, steps: int, part: str = "all") -> None:
    client, functions = build(steps)
    with tempfile.TemporaryDirectory(prefix="mainspring-dash-") as workdir:
        engine = mainspring.Engine(
            client, functions, database=Path(workdir) / "dash.db", durability="normal"
        )
        app = create_app(engine, dev=True)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        await until(lambda: _true(server.started), 0.05)
        try:
            long_id = await fill(engine, runs)
            [some] = await engine.list_runs(function_id="bench-dash-one", limit=1)
            page = await engine.list_runs(limit=100)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=30, follow_redirects=True
            ) as http:
                rows = [
                    ("runs page, first", "/runs"),
                    ("runs page, status filter", "/runs?status=Completed"),
                    ("runs page, older page", f"/runs?older={page[-1].id}"),
                    # A CEL filter on the triggering event: most runs match, or one does
                    # (the search reads on until its budget, engine/run_search.py).
                    ("runs page, q most match", "/runs?" + urlencode({"q": "event.data.n >= 0"})),
                    ("runs page, q one matches", "/runs?" + urlencode({"q": "event.data.n == 7"})),
                    (f"run page, {steps:,} steps", f"/runs/{long_id}"),
                    (f"run page, {steps:,}, fragment", f"/runs/{long_id}?fragment=1"),
                    ("run page, one step", f"/runs/{some.id}"),
                ]
                for label, path in rows:
                    if part not in ("all", label.split(" page")[0]):
                        continue
                    median, worst = await timed(http, path)
                    print(f"  {label:<28} median {median:7.1f} ms   max {worst:7.1f} ms")
                if part in ("all", "live"):
                    live = await live_latency(http, engine)
                    print(
                        f"  {'live update':<28} median {statistics.median(live):7.1f} ms   "
                        f"max {max(live):7.1f} ms  ({len(live)} events)"
                    )
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--part", choices=("all", "runs", "run", "live"), default="all")
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.steps, options.part))
