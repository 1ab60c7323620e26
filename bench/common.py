"""Workload sizes, the measurement method, the record format and what the tables share
(targets, collected results, value formatting) for every system."""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from bench.cpu import CpuMeter

# Workload sizes, as in ../shared/peers/README.md.
N_SEQ: Final = 100  # (a) sequential steps in one run
N_FAN: Final = 100  # (b) parallel steps fanned out by one run
N_RUNS: Final = 200  # (c) one-step runs started back to back
N_LONG: Final = 10_000  # (d) sequential steps in one run (Mainspring only)
N_EVENTS: Final = 20_000  # (g) events sent through POST /e/ that trigger nothing
N_EVENTS_TRIGGERED: Final = 2_000  # (h) events sent through POST /e/, each starting a run
EVENT_BATCH: Final = 100  # (g), (h) events per POST /e/ request
# Flow control (bench/flow_workloads.py).
N_KEYED_RUNS: Final = 10_000  # (i) one-step runs, spread over N_KEYS keys
N_KEYS: Final = 100  # (i) concurrency keys
KEY_LIMIT: Final = 2  # (i), (j) Concurrency(limit=KEY_LIMIT, key="event.data.key")
N_HOT_RUNS: Final = 10_000  # (j) runs queued on the hot key
N_COLD_EVENTS: Final = 5  # (j) events on cold keys, timed one by one
N_BATCHED_EVENTS: Final = 1_000  # (k) events into a batched function
BATCH_MAX_SIZE: Final = 100  # (k) Batch(max_size=...)
SEND_SIZE: Final = 100  # (i), (j), (k) events per engine.send

# Measurement method: WARMUP unmeasured runs, then the median of REPS measured runs.
WARMUP: Final = 1
REPS: Final = 3
#: Measured runs of (c) over HTTP, whose spread (min-max) is printed: one (c) run is a fifth
#: of a second, and one slow run among three moves the median.
REPS_SPREAD: Final = 5

Workload = Literal["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
Metric = Literal[
    "per_step",
    "total",
    "throughput",
    "rss",
    "max_wake_lateness",
    "baseline_throughput",
    "ratio",
    "median_latency",
    "max_latency",
    "commit_latency",
]
Unit = Literal["ms/step", "ms", "runs/s", "MB", "events/s", "x"]

WORKLOADS: Final[tuple[Workload, ...]] = ("a", "b", "c", "d", "e", "f", "i", "j", "k")
#: The run-lifecycle workloads, run by bench/lifecycle.py in processes of their own.
LIFECYCLE: Final[tuple[Workload, ...]] = ("e", "f")
#: The flow-control workloads (bench/flow_workloads.py); `--only flow` selects them.
FLOW: Final[tuple[Workload, ...]] = ("i", "j", "k")
#: The workloads of `run.py --http` (bench/http_workloads.py): server and app on uvicorn.
HTTP_WORKLOADS: Final[tuple[Workload, ...]] = ("a", "b", "c", "g", "h")

DESCRIPTIONS: Final[dict[Workload, str]] = {
    "a": f"{N_SEQ} sequential steps, per-step overhead",
    "b": f"fan-out/fan-in of {N_FAN} parallel steps",
    "c": f"{N_RUNS} one-step runs, throughput",
    "d": f"{N_LONG:,} sequential steps, per-step overhead",
    "e": "10,000 runs asleep at once: RSS, and lateness of their wake-ups",
    "f": "1,000 waiting runs resumed by 1,000 events",
    "g": f"{N_EVENTS:,} events in batches of {EVENT_BATCH}, no trigger",
    "h": f"{N_EVENTS_TRIGGERED:,} events in batches of {EVENT_BATCH}, each starts a run",
    "i": f"{N_KEYED_RUNS:,} one-step runs on {N_KEYS} keys, limit {KEY_LIMIT} per key",
    "j": f"a cold key's start behind {N_HOT_RUNS:,} runs queued on a hot key",
    "k": f"{N_BATCHED_EVENTS:,} events into batches of {BATCH_MAX_SIZE}",
}


class Record(TypedDict):
    """One line of the JSON output."""

    workload: Workload
    system: str
    metric: Metric
    value: float
    unit: Unit
    #: Over HTTP: each measured run's value, in `unit` (throughput and total times).
    samples: NotRequired[list[float]]
    #: Over HTTP: CPU seconds per wall second over the measured runs, by process ("driver"
    #: is the bench process, which sends the requests; 1.0 is one core).
    cpu: NotRequired[dict[str, float]]


@dataclass(frozen=True)
class Sample:
    """Wall-clock seconds of the measured runs (warm-ups excluded)."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def describe(self) -> str:
        shown = ", ".join(f"{r * 1e3:.2f}" for r in self.runs)
        return f"median {self.median * 1e3:.2f} ms (runs: {shown} ms)"


def measure(fn: Callable[[], object]) -> Sample:
    """Time `fn` REPS times after WARMUP unmeasured calls."""
    for _ in range(WARMUP):
        fn()
    runs: list[float] = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return Sample(tuple(runs))


async def measure_async(
    fn: Callable[[], Awaitable[object]], *, reps: int = REPS, meter: CpuMeter | None = None
) -> Sample:
    """Time `await fn()` `reps` times after WARMUP unmeasured calls; `meter` (if given)
    adds up the CPU used during the measured calls."""
    for _ in range(WARMUP):
        await fn()
    runs: list[float] = []
    for _ in range(reps):
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        await fn()
        runs.append(time.perf_counter() - t0)
        if meter is not None:
            meter.stop()
    return Sample(tuple(runs))


def per_step_record(
    workload: Workload, system: str, empty: Sample, full: Sample, steps: int
) -> Record:
    """Per-step overhead: (median of the n-step run - median of the empty run) / n."""
    value = (full.median - empty.median) / steps * 1e3
    return Record(workload=workload, system=system, metric="per_step", value=value, unit="ms/step")


def total_record(workload: Workload, system: str, sample: Sample) -> Record:
    return Record(
        workload=workload, system=system, metric="total", value=sample.median * 1e3, unit="ms"
    )


def throughput_record(workload: Workload, system: str, sample: Sample, runs: int) -> Record:
    return Record(
        workload=workload,
        system=system,
        metric="throughput",
        value=runs / sample.median,
        unit="runs/s",
    )


def spread(values: Sequence[float], unit: str) -> str:
    """``median 1,020 runs/s, min-max 940-1,110 over 5 runs``."""
    low, high = min(values), max(values)
    shown = ".1f" if unit == "ms" else ",.0f"
    return (
        f"median {statistics.median(values):{shown}} {unit}, "
        f"min-max {low:{shown}}-{high:{shown}} over {len(values)} runs"
    )


def events_record(workload: Workload, system: str, sample: Sample, events: int) -> Record:
    return Record(
        workload=workload,
        system=system,
        metric="throughput",
        value=events / sample.median,
        unit="events/s",
    )


# --- results, targets and formatting shared by the tables ---------------------------------


@dataclass(frozen=True)
class Target:
    bound: float
    higher_is_better: bool
    text: str

    def met(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound


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


def attempt(
    results: Results, workload: Workload, system: str, fn: Callable[[], Record | list[Record]]
) -> None:
    """Run one measurement; a failure is printed, kept as the reason and fails the run."""
    try:
        got = fn()
        results.records.extend(got if isinstance(got, list) else [got])
    except Exception as exc:
        results.failed = True
        results.errors[(workload, system)] = f"{type(exc).__name__}: {exc}"
        print(f"  {system} {workload}: FAILED", file=sys.stderr)
        traceback.print_exc()


def fmt_value(record: Record | None, error: str | None) -> str:
    if record is None:
        if error is None:
            return "-"
        return "unavailable" if error.startswith("unavailable") else "error"
    value = record["value"]
    if record["unit"] == "ms/step":
        return f"{value:.3f} ms/step"
    if record["unit"] == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.0f} {record['unit']}"


def advantage(ours: Record, peer: Record) -> float:
    """How many times better Mainspring is (>1 = better): peer/ours for times, ours/peer for
    throughput."""
    if ours["metric"] == "throughput":
        return ours["value"] / peer["value"]
    return peer["value"] / ours["value"]
