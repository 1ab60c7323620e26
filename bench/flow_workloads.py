"""Flow-control workloads (i)-(k) on Mainspring's embedded engine, and their table.

Each workload gets its own engine(s) on fresh SQLite files, started before any clock runs and
stopped after, like (a)-(d) in `mainspring_workloads.py`. Events go in with `engine.send`,
SEND_SIZE events per call, their lists built before the clock starts.

(i) N_KEYED_RUNS one-step runs whose keys `event.data.key` cycle over N_KEYS values, on a
    function with `Concurrency(limit=KEY_LIMIT, key="event.data.key")`, and the same workload
    on a function without flow control. Both engines are open at once in this process, each
    on its own database, and their rounds alternate (which one goes first alternates too).
    One timed round: every send, then until every run has completed. The step counts its
    calls, so the round waits for the last step without polling; then the runs not yet
    recorded as finished are looked up with `engine.list_runs` and awaited with
    `engine.wait`. After each round, every run of the function must be `Completed` with its
    own output. Figures: runs/s of each, and their ratio (flow-controlled / uncontrolled).
(j) N_HOT_RUNS runs are queued on one hot key (limit KEY_LIMIT per key; each hot step sleeps
    HOT_STEP_S), then N_COLD_EVENTS events are sent one by one, COLD_INTERVAL_S apart, each
    on a key of its own. Latency: from just *before* `engine.send` is called until the cold
    run's step starts (`time.perf_counter()` recorded inside the step); the time from `send`
    returning is printed too. Each cold run must complete, the hot backlog must still be
    there after the last cold event, and at most KEY_LIMIT hot steps may ever have been in
    flight at once. The same cold events on the idle engine, before the backlog is queued,
    are printed for reference.
(k) N_BATCHED_EVENTS events into a function with
    `batch_events=Batch(max_size=BATCH_MAX_SIZE, timeout="10s")`, sent SEND_SIZE per call.
    Timed: from the first send until the last of the batched runs has completed. Each round
    must start exactly N_BATCHED_EVENTS / BATCH_MAX_SIZE runs, each with BATCH_MAX_SIZE
    events, that between them hold every event of the round once.

(i) and (k) are timed like the rest of the suite: the median of REPS rounds after WARMUP.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import mainspring
from bench.common import (
    BATCH_MAX_SIZE,
    DESCRIPTIONS,
    KEY_LIMIT,
    N_BATCHED_EVENTS,
    N_COLD_EVENTS,
    N_HOT_RUNS,
    N_KEYED_RUNS,
    N_KEYS,
    REPS,
    SEND_SIZE,
    WARMUP,
    Metric,
    Record,
    Sample,
    Unit,
    Workload,
)
from bench.mainspring_workloads import DURABILITIES, Durability, system_name

HOT_STEP_S: Final = 0.005  # (j) each hot step sleeps this long, so the backlog stays
COLD_INTERVAL_S: Final = 0.2  # (j) between two cold events
HOT_STARTED_BEFORE_COLD: Final = 20  # (j) hot steps begun before the first cold event
BATCH_TIMEOUT: Final = "10s"  # (k)
WAIT_TIMEOUT_S: Final = 120.0

RATIO_TARGET: Final = 0.9
LATENCY_TARGET_MS: Final = 50.0

REQUIRED_API: Final = ("Batch", "Concurrency", "Engine", "Event", "RunStatus", "TriggerEvent")

UNFINISHED: Final = (mainspring.RunStatus.QUEUED, mainspring.RunStatus.RUNNING)


def check_api() -> None:
    """Raise AttributeError if the flow-control API the workloads use is not there (yet)."""
    missing = [name for name in REQUIRED_API if not hasattr(mainspring, name)]
    if missing:
        raise AttributeError(f"module 'mainspring' has no {', '.join(missing)}")


class Tally:
    """Counts calls of a step; `expect(n)` gives a future done at the n-th call from now."""

    def __init__(self) -> None:
        self.count = 0
        self._want = 0
        self._done: asyncio.Future[None] | None = None

    def expect(self, n: int) -> asyncio.Future[None]:
        self.count = 0
        self._want = n
        self._done = asyncio.get_running_loop().create_future()
        return self._done

    def hit(self) -> None:
        self.count += 1
        if self.count >= self._want and self._done is not None and not self._done.done():
            self._done.set_result(None)


def _batches(events: Sequence[mainspring.Event]) -> list[list[mainspring.Event]]:
    return [list(events[i : i + SEND_SIZE]) for i in range(0, len(events), SEND_SIZE)]


async def _settle(engine: mainspring.Engine, function_id: str) -> None:
    """Await every run of the function not recorded as finished yet."""
    while True:
        pending = await engine.list_runs(
            function_id=function_id, statuses=UNFINISHED, limit=1_000, newest_first=False
        )
        if not pending:
            return
        await asyncio.gather(*(engine.wait(run.id, timeout=WAIT_TIMEOUT_S) for run in pending))


async def _all_runs(engine: mainspring.Engine, function_id: str) -> list[mainspring.Run]:
    runs: list[mainspring.Run] = []
    after = None
    while True:
        page = await engine.list_runs(
            function_id=function_id, limit=5_000, after=after, newest_first=False
        )
        runs += page
        if len(page) < 5_000:
            return runs
        after = page[-1].id


# --- (i) throughput with and without a keyed concurrency limit ------------------------------


@dataclass
class _Keyed:
    engine: mainspring.Engine
    function_id: str
    tally: Tally
    label: str
    runs_done: int = 0


def _keyed_engine(database: Path, durability: Durability, *, limited: bool) -> _Keyed:
    client = mainspring.Client(app_id="bench-flow")
    tally = Tally()

    async def counted(i: int) -> int:
        tally.hit()
        return i

    concurrency = [mainspring.Concurrency(limit=KEY_LIMIT, key="event.data.key")]

    @client.create_function(
        fn_id="keyed",
        trigger=mainspring.TriggerEvent(event="bench/keyed"),
        concurrency=concurrency if limited else None,
    )
    async def keyed(ctx: mainspring.Context) -> int:
        return await ctx.step.run("s0", counted, ctx.event.data["i"])

    engine = mainspring.Engine(client, [keyed], database=str(database), durability=durability)
    label = "flow-controlled" if limited else "no flow control"
    return _Keyed(engine, keyed.id, tally, label)


async def _keyed_round(side: _Keyed) -> float:
    """One round of (i) on one engine: seconds from the first send until all runs completed."""
    sends = _batches(
        [
            mainspring.Event(name="bench/keyed", data={"i": i, "key": f"k{i % N_KEYS}"})
            for i in range(N_KEYED_RUNS)
        ]
    )
    steps_done = side.tally.expect(N_KEYED_RUNS)
    started = time.perf_counter()
    for events in sends:
        await side.engine.send(events)
    await asyncio.wait_for(steps_done, WAIT_TIMEOUT_S)
    await _settle(side.engine, side.function_id)
    elapsed = time.perf_counter() - started
    side.runs_done += N_KEYED_RUNS
    runs = await _all_runs(side.engine, side.function_id)
    bad = [run for run in runs if run.status != "Completed"]
    if len(runs) != side.runs_done or bad:
        raise RuntimeError(
            f"(i) {side.label}: {len(runs)} runs, expected {side.runs_done}; "
            f"{len(bad)} not Completed (first: {bad[0] if bad else None})"
        )
    outputs = sorted(run.output for run in runs[-N_KEYED_RUNS:])
    if outputs != list(range(N_KEYED_RUNS)):
        raise RuntimeError(f"(i) {side.label}: the runs' outputs are not 0..{N_KEYED_RUNS - 1}")
    return elapsed


async def _keyed(workdir: Path, durability: Durability) -> list[Record]:
    system = system_name(durability)
    flow = _keyed_engine(workdir / f"flow-i-{durability}.db", durability, limited=True)
    plain = _keyed_engine(workdir / f"plain-i-{durability}.db", durability, limited=False)
    times: dict[str, list[float]] = {flow.label: [], plain.label: []}
    async with flow.engine, plain.engine:
        for round_no in range(WARMUP + REPS):
            order = (plain, flow) if round_no % 2 == 0 else (flow, plain)
            for side in order:
                elapsed = await _keyed_round(side)
                if round_no >= WARMUP:
                    times[side.label].append(elapsed)
    samples = {label: Sample(tuple(runs)) for label, runs in times.items()}
    for label, sample in samples.items():
        print(f"  {system} i: {N_KEYED_RUNS:,} runs, {label}: {sample.describe()}", flush=True)
    with_flow = N_KEYED_RUNS / samples[flow.label].median
    without = N_KEYED_RUNS / samples[plain.label].median
    print(
        f"  {system} i: {with_flow:,.0f} vs {without:,.0f} runs/s, ratio {with_flow / without:.3f}",
        flush=True,
    )
    return [
        _record("i", system, "throughput", with_flow, "runs/s"),
        _record("i", system, "baseline_throughput", without, "runs/s"),
        _record("i", system, "ratio", with_flow / without, "x"),
    ]


# --- (j) a cold key's start latency behind a hot key's backlog ----------------------------


@dataclass
class _Cold:
    """Where one cold event's times are kept."""

    sent: float = 0.0
    returned: float = 0.0
    stepped: float = 0.0


class _HotCold:
    """The function of (j): its hot steps sleep and count those in flight; its cold steps
    record when they begin."""

    def __init__(self) -> None:
        self.hot_started = 0
        self.hot_in_flight = 0
        self.hot_max_in_flight = 0
        self.cold: dict[str, asyncio.Future[float]] = {}
        #: Set once HOT_STARTED_BEFORE_COLD hot steps have begun.
        self.backlog_going = asyncio.Event()

    async def step(self, key: str) -> str:
        if key != "hot":
            now = time.perf_counter()
            waiter = self.cold.get(key)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
            return key
        self.hot_started += 1
        if self.hot_started >= HOT_STARTED_BEFORE_COLD:
            self.backlog_going.set()
        self.hot_in_flight += 1
        self.hot_max_in_flight = max(self.hot_max_in_flight, self.hot_in_flight)
        try:
            await asyncio.sleep(HOT_STEP_S)
        finally:
            self.hot_in_flight -= 1
        return key


async def _cold_events(engine: mainspring.Engine, state: _HotCold, tag: str) -> list[_Cold]:
    """Send N_COLD_EVENTS events on fresh keys, COLD_INTERVAL_S apart; each run must complete."""
    loop = asyncio.get_running_loop()
    found: list[_Cold] = []
    for n in range(N_COLD_EVENTS):
        key = f"cold-{tag}-{n}"
        stepped = state.cold[key] = loop.create_future()
        event = mainspring.Event(name="bench/hot-cold", data={"key": key})
        times = _Cold()
        times.sent = time.perf_counter()
        [event_id] = await engine.send(event)
        times.returned = time.perf_counter()
        times.stepped = await asyncio.wait_for(stepped, WAIT_TIMEOUT_S)
        found.append(times)
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=WAIT_TIMEOUT_S)
        if done.status != "Completed" or done.output != key:
            raise RuntimeError(f"(j) cold run {key}: {done.status}, output {done.output!r}")
        await asyncio.sleep(max(0.0, times.sent + COLD_INTERVAL_S - time.perf_counter()))
    return found


def _describe_cold(times: Sequence[_Cold]) -> tuple[list[float], str]:
    before = [(t.stepped - t.sent) * 1e3 for t in times]
    after = [(t.stepped - t.returned) * 1e3 for t in times]

    def show(values: list[float]) -> str:
        shown = ", ".join(f"{v:.2f}" for v in values)
        return f"median {statistics.median(values):.2f}, max {max(values):.2f} ms ({shown})"

    return before, f"from before send {show(before)}; from send's return {show(after)}"


async def _hot_cold(workdir: Path, durability: Durability) -> list[Record]:
    system = system_name(durability)
    client = mainspring.Client(app_id="bench-flow")
    state = _HotCold()

    @client.create_function(
        fn_id="hot-cold",
        trigger=mainspring.TriggerEvent(event="bench/hot-cold"),
        concurrency=[mainspring.Concurrency(limit=KEY_LIMIT, key="event.data.key")],
    )
    async def hot_cold(ctx: mainspring.Context) -> str:
        return await ctx.step.run("s0", state.step, ctx.event.data["key"])

    database = workdir / f"flow-j-{durability}.db"
    async with mainspring.Engine(
        client, [hot_cold], database=str(database), durability=durability
    ) as engine:
        idle = await _cold_events(engine, state, "idle")
        print(f"  {system} j: idle engine, {_describe_cold(idle)[1]}", flush=True)
        sends = _batches(
            [
                mainspring.Event(name="bench/hot-cold", data={"key": "hot"})
                for _ in range(N_HOT_RUNS)
            ]
        )
        queued_at = time.perf_counter()
        for events in sends:
            await engine.send(events)
        queued = time.perf_counter() - queued_at
        await asyncio.wait_for(state.backlog_going.wait(), WAIT_TIMEOUT_S)
        busy = await _cold_events(engine, state, "busy")
        left = N_HOT_RUNS - state.hot_started
        biggest = state.hot_max_in_flight
    before, text = _describe_cold(busy)
    print(
        f"  {system} j: {N_HOT_RUNS:,} hot runs sent in {queued * 1e3:.0f} ms; "
        f"with the backlog, {text}",
        flush=True,
    )
    print(
        f"  {system} j: after the last cold event {left:,} hot runs had not started; "
        f"most hot steps in flight at once: {biggest}",
        flush=True,
    )
    if left <= 0:
        raise RuntimeError("(j) the hot backlog drained before the cold events were measured")
    if biggest > KEY_LIMIT:
        raise RuntimeError(f"(j) {biggest} hot steps ran at once; the limit is {KEY_LIMIT}")
    return [
        _record("j", system, "median_latency", statistics.median(before), "ms"),
        _record("j", system, "max_latency", max(before), "ms"),
    ]


# --- (k) batching ---------------------------------------------------------------------------


async def _batched(workdir: Path, durability: Durability) -> list[Record]:
    system = system_name(durability)
    client = mainspring.Client(app_id="bench-flow")

    async def size(n: int) -> int:
        return n

    @client.create_function(
        fn_id="batched",
        trigger=mainspring.TriggerEvent(event="bench/batched"),
        batch_events=mainspring.Batch(max_size=BATCH_MAX_SIZE, timeout=BATCH_TIMEOUT),
    )
    async def batched(ctx: mainspring.Context) -> list[int]:
        ids = [event.data["i"] for event in ctx.events]
        if await ctx.step.run("s0", size, len(ids)) != len(ids):
            raise RuntimeError("the step's output is wrong")
        return ids

    want_runs = N_BATCHED_EVENTS // BATCH_MAX_SIZE
    database = workdir / f"flow-k-{durability}.db"
    async with mainspring.Engine(
        client, [batched], database=str(database), durability=durability
    ) as engine:
        seen: set[str] = set()
        times: list[float] = []
        for round_no in range(WARMUP + REPS):
            first = round_no * N_BATCHED_EVENTS
            wanted = list(range(first, first + N_BATCHED_EVENTS))
            sends = _batches(
                [mainspring.Event(name="bench/batched", data={"i": i}) for i in wanted]
            )
            started = time.perf_counter()
            for events in sends:
                await engine.send(events)
            runs = await engine.list_runs(function_id=batched.id, limit=10 * want_runs)
            new = [run for run in runs if run.id not in seen]
            done = await asyncio.gather(
                *(engine.wait(run.id, timeout=WAIT_TIMEOUT_S) for run in new)
            )
            elapsed = time.perf_counter() - started
            _check_batches(done, want_runs, wanted)
            seen.update(run.id for run in new)
            if round_no >= WARMUP:
                times.append(elapsed)
        every = await _all_runs(engine, batched.id)
        if len(every) != len(seen):
            raise RuntimeError(f"(k) {len(every)} runs in all, expected {len(seen)}")
    sample = Sample(tuple(times))
    print(
        f"  {system} k: {N_BATCHED_EVENTS:,} events -> {want_runs} runs of {BATCH_MAX_SIZE}, "
        f"first send to last run completed {sample.describe()}",
        flush=True,
    )
    return [_record("k", system, "total", sample.median * 1e3, "ms")]


def _check_batches(done: Sequence[mainspring.Run], want_runs: int, wanted: list[int]) -> None:
    sizes = [len(run.output) if isinstance(run.output, list) else None for run in done]
    statuses = sorted({str(run.status) for run in done})
    held = sorted(i for run in done if isinstance(run.output, list) for i in run.output)
    if (
        len(done) != want_runs
        or statuses != ["Completed"]
        or any(s != BATCH_MAX_SIZE for s in sizes)
        or held != wanted
    ):
        raise RuntimeError(
            f"(k) {len(done)} runs (expected {want_runs}), statuses {statuses}, "
            f"events per run {sizes} (expected {BATCH_MAX_SIZE} each), "
            f"{len(held)} events held (expected each of {len(wanted)} once)"
        )


# --- running and reporting ------------------------------------------------------------------


def _record(workload: Workload, system: str, metric: Metric, value: float, unit: Unit) -> Record:
    return Record(workload=workload, system=system, metric=metric, value=value, unit=unit)


_RUNNERS: Final[dict[str, Callable[[Path, Durability], Coroutine[Any, Any, list[Record]]]]] = {
    "i": _keyed,
    "j": _hot_cold,
    "k": _batched,
}


def run(workload: Workload, durability: Durability, workdir: Path) -> list[Record]:
    """Run one flow-control workload on fresh database files in `workdir`; its records."""
    return asyncio.run(_RUNNERS[workload](workdir, durability))


@dataclass(frozen=True)
class _Row:
    workload: Workload
    metric: str
    shown: str
    target: str = "-"
    met: Callable[[float], bool] | None = None


ROWS: Final[tuple[_Row, ...]] = (
    _Row("i", "throughput", f"runs/s, Concurrency(limit={KEY_LIMIT}, key)"),
    _Row("i", "baseline_throughput", "runs/s, no flow control"),
    _Row("i", "ratio", "ratio", f">= {RATIO_TARGET}x", lambda v: v >= RATIO_TARGET),
    _Row(
        "j",
        "median_latency",
        "median",
        f"<= {LATENCY_TARGET_MS:.0f} ms",
        lambda v: v <= LATENCY_TARGET_MS,
    ),
    _Row(
        "j",
        "max_latency",
        "max",
        f"<= {LATENCY_TARGET_MS:.0f} ms",
        lambda v: v <= LATENCY_TARGET_MS,
    ),
    # A round that does not give exactly these runs fails instead of making a record.
    _Row(
        "k",
        "total",
        "first send to last run done",
        f"{N_BATCHED_EVENTS // BATCH_MAX_SIZE} runs of {BATCH_MAX_SIZE} events each",
        lambda v: True,
    ),
)


def _value(record: Record) -> str:
    unit = record["unit"]
    if unit == "x":
        return f"{record['value']:.3f}x"
    if unit == "ms":
        return f"{record['value']:,.1f} ms"
    return f"{record['value']:,.0f} {unit}"


def table(
    records: Sequence[Record], errors: Mapping[tuple[Workload, str], str], workloads: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the flow-control table (one row per figure)."""
    systems = [system_name(d) for d in DURABILITIES]
    header = [
        "workload",
        "figure",
        *(f"mainspring({d})" for d in DURABILITIES),
        "target",
        "met? (" + " | ".join(DURABILITIES) + ")",
    ]
    rows: list[list[str]] = []
    shown: set[str] = set()
    for spec in ROWS:
        if spec.workload not in workloads:
            continue
        first = spec.workload not in shown
        shown.add(spec.workload)
        row = [f"({spec.workload}) {DESCRIPTIONS[spec.workload]}" if first else "", spec.shown]
        verdicts: list[str] = []
        for system in systems:
            record = next(
                (
                    r
                    for r in records
                    if r["workload"] == spec.workload
                    and r["system"] == system
                    and r["metric"] == spec.metric
                ),
                None,
            )
            if record is None:
                error = errors.get((spec.workload, system))
                row.append("-" if error is None else "error")
                verdicts.append("-")
                continue
            row.append(_value(record))
            if spec.met is not None:
                verdicts.append("yes" if spec.met(record["value"]) else "NO")
        row.append(spec.target)
        row.append(" | ".join(verdicts) if spec.met is not None else "")
        rows.append(row)
    return header, rows
