"""The app that ``test_sigkill.py`` kills: ``python sigkill_app.py DB EFFECTS_DIR start|resume``.

Three functions, all triggered by one ``sigkill/go`` event (``data={"k": k}``):

* ``seq`` (async): steps ``warm s1 s2 s3``, a durable sleep ``nap``, then ``s4 s5``;
* ``par`` (async): ``warm before``, then ``group.parallel`` of four branches (``p1``;
  ``p2a`` then ``p2b``; ``p3a`` then ``p3b``; ``p4``), then ``after``;
* ``mixed`` (sync): ``warm t1 t2``, then a sync ``group.parallel`` (``q1``; ``q2a`` then
  ``q2b``; ``q3a`` then ``q3b``), then ``tfinal``.

Every step handler appends ``"<run-key> <step> start <nonce>"`` to ``EFFECTS_DIR/effects.log``,
sleeps (so a kill can land inside it), appends ``"<run-key> <step> end <nonce>"`` and returns
``{"v": value(run_key, step), "nonce": nonce}``. The nonce ties the memo the engine recorded
to the one execution that produced it. A run's output is the list of its steps' ``v`` in the
order of :data:`STEPS`, so it is known in advance (:func:`expected_output`).

``start`` sends :data:`RUNS_PER_FUNCTION` events when the database is new (event ids
``go-<k>``, so a repeat could not duplicate runs anyway) and writes their ids to
``sent.json``; ``resume`` only runs the engine. Either way the process waits until every run
has finished, writes ``done.json`` and exits 0. It prints ``ready``, ``sent`` and ``done`` on
stdout as it goes. ``SIGKILL_SLEEP_SCALE`` (default 1) scales every sleep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import sys
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import mainspring

APP_ID = "sigkill"
EVENT = "sigkill/go"
RUNS_PER_FUNCTION = 4
FUNCTIONS = ("seq", "par", "mixed")

#: Steps that run a handler, per function, in the order of the run's output.
STEPS: dict[str, tuple[str, ...]] = {
    "seq": ("warm", "s1", "s2", "s3", "s4", "s5"),
    "par": ("warm", "before", "p1", "p2a", "p2b", "p3a", "p3b", "p4", "after"),
    "mixed": ("warm", "t1", "t2", "q1", "q2a", "q2b", "q3a", "q3b", "tfinal"),
}
#: Durable sleeps (no handler) per function.
SLEEPS: dict[str, tuple[str, ...]] = {"seq": ("nap",), "par": (), "mixed": ()}
#: Steps that belong to a parallel group.
BRANCH_STEPS: dict[str, frozenset[str]] = {
    "seq": frozenset(),
    "par": frozenset({"p1", "p2a", "p2b", "p3a", "p3b", "p4"}),
    "mixed": frozenset({"q1", "q2a", "q2b", "q3a", "q3b"}),
}

#: Handler sleep per step, in milliseconds (``warm`` staggers the runs: see :func:`step_ms`).
DURATIONS_MS: dict[str, int] = {
    "s1": 150,
    "s2": 250,
    "s3": 150,
    "s4": 150,
    "s5": 150,
    "before": 100,
    "p1": 60,
    "p2a": 100,
    "p2b": 350,
    "p3a": 400,
    "p3b": 300,
    "p4": 450,
    "after": 100,
    "t1": 100,
    "t2": 150,
    "q1": 60,
    "q2a": 350,
    "q2b": 250,
    # Two branches of two steps, as in "par": the group's second round has two handlers in
    # flight with the first round recorded, whether each step is a call or a plan is.
    "q3a": 100,
    "q3b": 300,
    "tfinal": 100,
}
NAP_MS = 400
WARM_BASE_MS = 50
WARM_STAGGER_MS = 300

EFFECTS_FILE = "effects.log"
SENT_FILE = "sent.json"
DONE_FILE = "done.json"


class Effect(TypedDict):
    v: int
    nonce: str


def scale() -> float:
    return float(os.environ.get("SIGKILL_SLEEP_SCALE", "1"))


def step_ms(k: int, step: str) -> int:
    """How long the handler of ``step`` sleeps in run ``k``."""
    base = WARM_BASE_MS + WARM_STAGGER_MS * k if step == "warm" else DURATIONS_MS[step]
    return int(base * scale())


def run_key(function: str, k: int) -> str:
    return f"{function}-{k}"


def value(key: str, step: str) -> int:
    return zlib.crc32(f"{key}/{step}".encode()) % 1000


def expected_output(function: str, k: int) -> list[int]:
    key = run_key(function, k)
    return [value(key, step) for step in STEPS[function]]


# -- side effects ----------------------------------------------------------------------

_effects_fd: int | None = None


def _effect(line: str) -> None:
    """Append one line with one write (O_APPEND: lines from threads never interleave)."""
    assert _effects_fd is not None, "the effects file is not open"
    os.write(_effects_fd, (line + "\n").encode())


async def async_effect(key: str, step: str, ms: int) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{key} {step} start {nonce}")
    await asyncio.sleep(ms / 1000)
    _effect(f"{key} {step} end {nonce}")
    return {"v": value(key, step), "nonce": nonce}


def sync_effect(key: str, step: str, ms: int) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{key} {step} start {nonce}")
    time.sleep(ms / 1000)
    _effect(f"{key} {step} end {nonce}")
    return {"v": value(key, step), "nonce": nonce}


# -- the functions ---------------------------------------------------------------------

client = mainspring.Client(app_id=APP_ID)
TRIGGER = mainspring.TriggerEvent(event=EVENT)


def _k(ctx: mainspring.Context | mainspring.ContextSync) -> int:
    k = ctx.event.data["k"]
    assert isinstance(k, int)
    return k


def _async_stepper(ctx: mainspring.Context, name: str) -> Callable[[str], Awaitable[Effect]]:
    k = _k(ctx)
    key = run_key(name, k)

    def step(step_id: str) -> Awaitable[Effect]:
        return ctx.step.run(step_id, async_effect, key, step_id, step_ms(k, step_id))

    return step


@client.create_function(fn_id="seq", trigger=TRIGGER, retries=3)
async def seq(ctx: mainspring.Context) -> list[int]:
    step = _async_stepper(ctx, "seq")
    out = [(await step(step_id))["v"] for step_id in ("warm", "s1", "s2", "s3")]
    await ctx.step.sleep("nap", int(NAP_MS * scale()))
    out += [(await step(step_id))["v"] for step_id in ("s4", "s5")]
    return out


@client.create_function(fn_id="par", trigger=TRIGGER, retries=3)
async def par(ctx: mainspring.Context) -> list[int]:
    step = _async_stepper(ctx, "par")
    warm = await step("warm")
    before = await step("before")

    async def chain(first: str, second: str) -> tuple[Effect, Effect]:
        a = await step(first)
        b = await step(second)
        return a, b

    p1, (p2a, p2b), (p3a, p3b), p4 = await ctx.group.parallel(
        (
            lambda: step("p1"),
            lambda: chain("p2a", "p2b"),
            lambda: chain("p3a", "p3b"),
            lambda: step("p4"),
        )
    )
    after = await step("after")
    return [r["v"] for r in (warm, before, p1, p2a, p2b, p3a, p3b, p4, after)]


@client.create_function(fn_id="mixed", trigger=TRIGGER, retries=3)
def mixed(ctx: mainspring.ContextSync) -> list[int]:
    k = _k(ctx)
    key = run_key("mixed", k)

    def step(step_id: str) -> Effect:
        return ctx.step.run(step_id, sync_effect, key, step_id, step_ms(k, step_id))

    def chain(first: str, second: str) -> tuple[Effect, Effect]:
        a = step(first)
        b = step(second)
        return a, b

    warm, t1, t2 = step("warm"), step("t1"), step("t2")
    q1, (q2a, q2b), (q3a, q3b) = ctx.group.parallel(
        (lambda: step("q1"), lambda: chain("q2a", "q2b"), lambda: chain("q3a", "q3b"))
    )
    tfinal = step("tfinal")
    return [r["v"] for r in (warm, t1, t2, q1, q2a, q2b, q3a, q3b, tfinal)]


FUNCTION_OBJECTS: tuple[mainspring.Function[list[int]], ...] = (seq, par, mixed)


# -- the process -----------------------------------------------------------------------


def _write_json(path: pathlib.Path, data: Any) -> None:
    """Write atomically: a reader sees the whole file or none."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_event_ids(directory: pathlib.Path) -> list[str] | None:
    path = directory / SENT_FILE
    if not path.exists():
        return None
    ids = json.loads(path.read_text())
    assert isinstance(ids, list)
    return [str(i) for i in ids]


async def serve(db: pathlib.Path, directory: pathlib.Path, mode: str, *, fresh: bool) -> int:
    engine = mainspring.Engine(
        client, FUNCTION_OBJECTS, database=db, durability="normal", retry_backoff=0.01
    )
    async with engine:
        print("ready", os.getpid(), flush=True)
        if mode == "start" and fresh:
            events = [
                mainspring.Event(name=EVENT, data={"k": k}, id=f"go-{k}")
                for k in range(RUNS_PER_FUNCTION)
            ]
            _write_json(directory / SENT_FILE, await engine.send(events))
            print("sent", flush=True)
        event_ids = _read_event_ids(directory)
        if event_ids is None:
            print(f"no {SENT_FILE}: nothing to resume", file=sys.stderr, flush=True)
            return 2
        summary: list[dict[str, Any]] = []
        for event_id in event_ids:
            for run in await engine.runs(event_id):
                finished = await engine.wait(run.id, timeout=60)
                summary.append(
                    {
                        "run_id": finished.id,
                        "function_id": finished.function_id,
                        "status": finished.status.value,
                        "output": finished.output,
                    }
                )
        _write_json(directory / DONE_FILE, summary)
        print("done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    global _effects_fd
    if len(argv) != 3 or argv[2] not in ("start", "resume"):
        print("usage: sigkill_app.py DB EFFECTS_DIR start|resume", file=sys.stderr)
        return 2
    db, directory, mode = pathlib.Path(argv[0]), pathlib.Path(argv[1]), argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    _effects_fd = os.open(directory / EFFECTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return asyncio.run(serve(db, directory, mode, fresh=not db.exists()))
    finally:
        os.close(_effects_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
