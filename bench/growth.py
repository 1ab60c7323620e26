"""Growth: does a step cost the same in a big run as in a small one?

    .venv/bin/python -m bench.growth                        # embedded engine (SQLite, "full")
    .venv/bin/python -m bench.growth --http                 # our SDK over HTTP, our server
    .venv/bin/python -m bench.growth --only fan,seq:10000   # a subset: a shape, or shape:N
    .venv/bin/python -m bench.growth --json bench/results/growth.json

Two shapes, each at three sizes, with the functions of ``bench/functions.py``:

- ``fan``: one run fanning out N parallel steps, then joining them (as workload (b)), for
  N = 100, 1,000, 5,000. Per step: the run's median total time / N.
- ``seq``: one run of N sequential steps (as workloads (a) and (d)), for N = 100, 1,000,
  10,000. Per step: (median t(N) - median t(0)) / N, the empty run timed on the same engine.

"Flat" means the per-step cost at the largest size is at most ``FLAT_RATIO`` times that at the
smallest. Embedded: a fresh ``Engine(durability="full")`` on a fresh SQLite file per shape
and size. ``--http``: the app (our SDK's ASGI adapter) on uvicorn in a subprocess, and a fresh
server (``Engine(durability="normal")`` + ``create_app``) per shape and size in this process,
with the helpers of ``bench/http_workloads.py``. Every timed run is checked: status Completed
and output sum(range(N)). See bench/README.md, "Growth".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypedDict

import mainspring
from bench.common import Sample
from bench.machine import print_machine_facts
from mainspring.engine.records import Run, RunStatus

Shape = Literal["fan", "seq"]
Transport = Literal["embedded", "http"]

SHAPES: Final[tuple[Shape, ...]] = ("fan", "seq")
SIZES: Final[dict[Shape, tuple[int, ...]]] = {
    "fan": (100, 1_000, 5_000),
    "seq": (100, 1_000, 10_000),
}
EVENTS: Final[dict[Shape, str]] = {"fan": "bench/fan", "seq": "bench/seq"}
LABELS: Final[dict[Shape, str]] = {
    "fan": "fan-out of N parallel steps, then join",
    "seq": "N sequential steps",
}
#: Per-step cost at the largest size over that at the smallest: at most this is "flat".
FLAT_RATIO: Final = 1.5
#: Sizes up to this are warmed up with a run of their own size and measured MANY_REPS
#: times; larger ones are warmed up with a run of WARMUP_N steps and measured FEW_REPS times.
SMALL_MAX: Final = 1_000
MANY_REPS: Final = 5
FEW_REPS: Final = 3
WARMUP_N: Final = 100

WAIT_TIMEOUT_S: Final = 600.0
RUN_LOOKUP_TIMEOUT_S: Final = 10.0
SYSTEMS: Final[dict[Transport, str]] = {"embedded": "mainspring-full", "http": "mainspring-http"}

Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """How one size is measured: a warm-up run of ``warmup_n`` steps, then ``reps`` timed runs."""

    warmup_n: int
    reps: int


def plan(n: int) -> Plan:
    if n <= SMALL_MAX:
        return Plan(warmup_n=n, reps=MANY_REPS)
    return Plan(warmup_n=WARMUP_N, reps=FEW_REPS)


@dataclass(frozen=True)
class Point:
    """One shape at one size: the timed runs, and for ``seq`` the empty runs of its engine."""

    shape: Shape
    n: int
    runs: Sample
    empty: Sample | None = None

    @property
    def per_step_ms(self) -> float:
        """ms per step: total / N for ``fan``, (t(N) - t(0)) / N for ``seq``."""
        if self.shape == "seq":
            if self.empty is None:
                raise ValueError("a sequential point needs its empty runs")
            return (self.runs.median - self.empty.median) / self.n * 1e3
        return self.runs.median / self.n * 1e3


def growth_ratio(points: Sequence[Point]) -> float | None:
    """Per-step cost at the largest size over that at the smallest (None if fewer than two
    sizes, or if the smallest is not positive: a difference of medians can be, at 100 steps)."""
    if len({p.n for p in points}) < 2:
        return None
    smallest = min(points, key=lambda p: p.n).per_step_ms
    largest = max(points, key=lambda p: p.n).per_step_ms
    return None if smallest <= 0 else largest / smallest


def is_flat(ratio: float | None) -> bool | None:
    return None if ratio is None else ratio <= FLAT_RATIO


def table(
    points: Sequence[tuple[Transport, Point]],
) -> tuple[list[str], list[list[str]]]:
    """One row per transport and shape: ms/step at each size, largest/smallest, flat?"""
    sizes = sorted({p.n for _, p in points})
    header = [
        "transport",
        "workload",
        *(f"N={n:,}" for n in sizes),
        "largest/smallest",
        f"flat (<= {FLAT_RATIO}x)?",
    ]
    rows: list[list[str]] = []
    for transport in ("embedded", "http"):
        for shape in SHAPES:
            mine = [p for t, p in points if t == transport and p.shape == shape]
            if not mine:
                continue
            by_n = {p.n: p for p in mine}
            ratio = growth_ratio(mine)
            flat = is_flat(ratio)
            rows.append(
                [
                    transport,
                    f"{shape}: {LABELS[shape]}",
                    *(f"{by_n[n].per_step_ms:.3f}" if n in by_n else "-" for n in sizes),
                    "n/a" if ratio is None else f"{ratio:.2f}x",
                    "n/a" if flat is None else ("yes" if flat else "NO"),
                ]
            )
    return header, rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (also readable as plain text)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


class GrowthRecord(TypedDict):
    """One line of the JSON output: a point's per-step cost, or a shape's growth ratio."""

    workload: str  # "fan" or "seq"
    system: str
    n: int | None  # None for the ratio
    metric: Literal["per_step", "ratio"]
    value: float | None
    unit: Literal["ms/step", "x"]
    runs_ms: list[float]  # the timed runs (empty for the ratio)


def records(points: Sequence[tuple[Transport, Point]]) -> list[GrowthRecord]:
    out: list[GrowthRecord] = []
    for transport in ("embedded", "http"):
        for shape in SHAPES:
            mine = [p for t, p in points if t == transport and p.shape == shape]
            for p in sorted(mine, key=lambda p: p.n):
                out.append(
                    GrowthRecord(
                        workload=shape,
                        system=SYSTEMS[transport],
                        n=p.n,
                        metric="per_step",
                        value=p.per_step_ms,
                        unit="ms/step",
                        runs_ms=[r * 1e3 for r in p.runs.runs],
                    )
                )
            if mine:
                out.append(
                    GrowthRecord(
                        workload=shape,
                        system=SYSTEMS[transport],
                        n=None,
                        metric="ratio",
                        value=growth_ratio(mine),
                        unit="x",
                        runs_ms=[],
                    )
                )
    return out


# --- the command line ----------------------------------------------------------------------


def parse_only(text: str | None) -> list[tuple[Shape, int]]:
    """``fan``, ``seq``, ``fan:5000``, ... (comma-separated) -> the (shape, N) to run, in the
    standard order. Raises ValueError on anything else."""
    everything = [(shape, n) for shape in SHAPES for n in SIZES[shape]]
    if text is None:
        return everything
    wanted: set[tuple[Shape, int]] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, size = item.partition(":")
        shape = next((s for s in SHAPES if s == name.strip()), None)
        if shape is None:
            raise ValueError(f"unknown shape {name.strip()!r} (one of {', '.join(SHAPES)})")
        if not size:
            wanted.update((shape, n) for n in SIZES[shape])
            continue
        try:
            n = int(size.strip())
        except ValueError:
            raise ValueError(f"{item!r}: the size must be a number") from None
        if n not in SIZES[shape]:
            allowed = ", ".join(str(s) for s in SIZES[shape])
            raise ValueError(f"{item!r}: {shape} runs at N = {allowed}")
        wanted.add((shape, n))
    if not wanted:
        raise ValueError("nothing selected")
    return [point for point in everything if point in wanted]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.growth",
        description="Per-step cost of fan-outs of 100, 1,000 and 5,000 parallel steps and of "
        "runs of 100, 1,000 and 10,000 sequential steps, embedded or over HTTP "
        "(see bench/README.md, 'Growth').",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="our SDK on uvicorn in a subprocess against our server, instead of the embedded "
        "engine",
    )
    parser.add_argument(
        "--only",
        metavar="fan,seq:10000,...",
        help="comma-separated shapes (fan, seq) or shape:N (fan:100|1000|5000, "
        "seq:100|1000|10000); default: all",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the records here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="directory for the database files (a fresh temporary directory is made inside "
        "it and removed afterwards; default: the system temp dir)",
    )
    args = parser.parse_args(argv)
    try:
        args.points = parse_only(args.only)
    except ValueError as exc:
        parser.error(f"--only: {exc}")
    return args


# --- measuring -----------------------------------------------------------------------------

StartAndWait = Callable[[Shape, int], Awaitable[None]]


async def measure(start_and_wait: StartAndWait, shape: Shape, n: int, reps: int) -> Sample:
    runs: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await start_and_wait(shape, n)
        runs.append(time.perf_counter() - t0)
    return Sample(tuple(runs))


async def measure_point(start_and_wait: StartAndWait, shape: Shape, n: int, log: Log) -> Point:
    """Warm up, then time the runs of ``n`` steps (and for ``seq`` the empty runs first)."""
    how = plan(n)
    empty: Sample | None = None
    if shape == "seq":
        await start_and_wait(shape, 0)
        empty = await measure(start_and_wait, shape, 0, how.reps)
        log(f"  {shape} {n:,}: empty run {empty.describe()}")
    await start_and_wait(shape, how.warmup_n)
    sample = await measure(start_and_wait, shape, n, how.reps)
    point = Point(shape, n, sample, empty)
    log(f"  {shape} {n:,}: {sample.describe()} -> {point.per_step_ms:.3f} ms/step")
    return point


def check(done: Run, shape: Shape, n: int) -> None:
    """A broken run must not pass for a fast one: Completed, with output sum(range(n))."""
    want = sum(range(n))
    if done.status is not RunStatus.COMPLETED or done.output != want:
        raise RuntimeError(
            f"{shape} run of {n:,} steps: status {done.status.value!r}, output "
            f"{done.output!r}, error {done.error!r}; expected 'Completed', {want!r}"
        )


# Embedded: the engine in this process.


async def _embedded_point(shape: Shape, n: int, database: Path, log: Log) -> Point:
    from bench.mainspring_workloads import make_engine

    async with make_engine(database, "full") as engine:

        async def start_and_wait(shape: Shape, n: int) -> None:
            [event_id] = await engine.send(mainspring.Event(name=EVENTS[shape], data={"n": n}))
            # As bench/mainspring_workloads.py's _run_id (private): the run may not be
            # recorded the moment send returns.
            deadline, polls = time.monotonic() + RUN_LOOKUP_TIMEOUT_S, 0
            while not (runs := await engine.runs(event_id)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"event {event_id} started no run")
                polls += 1
                await asyncio.sleep(0 if polls < 100 else 0.001)
            if len(runs) != 1:
                raise RuntimeError(f"event {event_id} started {len(runs)} runs, expected 1")
            done = await engine.wait(runs[0].id, timeout=WAIT_TIMEOUT_S)
            check(done, shape, n)

        return await measure_point(start_and_wait, shape, n, log)


def run_embedded(todo: Sequence[tuple[Shape, int]], workdir: Path, log: Log) -> list[Point]:
    log("\nembedded: Engine(durability='full') on a fresh SQLite file per shape and size")
    points = []
    for shape, n in todo:
        database = workdir / f"growth-{shape}-{n}-full.db"
        points.append(asyncio.run(_embedded_point(shape, n, database, log)))
    return points


# Over HTTP: the app in a subprocess, the server in this process (bench/http_workloads.py).


def run_http(todo: Sequence[tuple[Shape, int]], workdir: Path, log: Log) -> list[Point]:
    from bench import http_workloads as hw

    log(
        f"\nhttp: {hw.OURS} app (our SDK's ASGI adapter) on uvicorn in a subprocess; server: "
        "Engine(durability='normal') + create_app on uvicorn in this process, fresh per shape "
        "and size"
    )
    points = []
    with hw.HttpApp(hw.OURS, workdir, log=log) as app:

        async def one(shape: Shape, n: int, database: Path) -> Point:
            async with hw.Server(database, app.server_port) as server:
                await server.sync(app.app_url, app.spec.app_id)

                async def start_and_wait(shape: Shape, n: int) -> None:
                    event_id = await server.send(EVENTS[shape], {"n": n})
                    run_id = await server.run_id(event_id)
                    done = await server.engine.wait(run_id, timeout=WAIT_TIMEOUT_S)
                    check(done, shape, n)

                return await measure_point(start_and_wait, shape, n, log)

        for shape, n in todo:
            database = workdir / f"growth-http-{shape}-{n}.db"
            try:
                points.append(asyncio.run(one(shape, n, database)))
            except SystemExit as exc:
                # As HttpApp.run does: uvicorn calls sys.exit when it cannot bind.
                raise RuntimeError(
                    f"the server could not start on port {app.server_port} (exit {exc.code})"
                ) from exc
            except Exception as exc:
                # HttpApp.run says whether the app exited (from its private process handle);
                # here the end of the app's log is shown instead, whatever happened.
                raise RuntimeError(f"{exc}; the app's log ends: {app.output()}") from exc
    return points


def _log(line: str) -> None:
    print(line, flush=True)


def summary(points: Sequence[tuple[Transport, Point]]) -> str:
    lines = [format_table(*table(points))]
    for transport in ("embedded", "http"):
        for shape in SHAPES:
            mine = [p for t, p in points if t == transport and p.shape == shape]
            flat = is_flat(growth_ratio(mine))
            if flat is not None:
                lines.append(
                    f"{transport} {shape}: flat (largest/smallest <= {FLAT_RATIO}x) "
                    f"{'holds' if flat else 'does NOT hold'}"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    transport: Transport = "http" if args.http else "embedded"
    todo: list[tuple[Shape, int]] = args.points
    with tempfile.TemporaryDirectory(prefix="mainspring-growth-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print_machine_facts(workdir, http=args.http)
        print(
            f"method: N <= {SMALL_MAX:,}: a warm-up run of N, then the median of {MANY_REPS} "
            f"runs; larger N: a warm-up run of {WARMUP_N}, then the median of {FEW_REPS} runs "
            "(for seq, the empty run is timed as often, on the same engine)"
        )
        run = run_http if args.http else run_embedded
        points = [(transport, p) for p in run(todo, workdir, _log)]
    print()
    print(summary(points))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records(points), indent=2) + "\n")
        print(f"\nwrote {len(records(points))} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
