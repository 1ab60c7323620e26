"""The engine ``test_sigkill_deploys.py`` kills: ``python deploy_sigkill_app.py DB DIR MODE``.

One embedded engine on ``DB`` serving one function, ``deployed``, in the version ``MODE``
names (``<scenario>-v1`` or ``<scenario>-v2``):

* ``group``: a parallel group; v1's second member ``p2`` keeps failing (retried after an
  hour), v2 renames it ``p2x``;
* ``kind``: v1 has ``step.sleep("nap")``, v2 reuses the id for ``step.run("nap", ...)``;
* ``budget``: v1's step ``charge`` keeps failing (retried after an hour), v2 renames it
  ``charge-v2`` and prints the attempt it runs at;
* ``shape``: v1's step ``fetch`` returns an object, v2's code expects a string.

A v1 process sends the event (once, on a new database) and prints ``ready-to-kill`` once
the run is where the test kills it: a failed attempt waiting for its retry (``group``,
``budget``), or the nap recorded and a longer sleep begun (``kind``). A v2 process runs
on a clock two hours ahead (a deploy that comes later: the retry and the sleep are due)
and prints ``done <status> <output or error as JSON>`` when the run finishes, then exits 0.
Step handlers append ``<step> <attempt>`` to ``DIR/effects.log``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import sqlite3
import sys
import time
from typing import Any

import mainspring

RETRY_AFTER_S = 3600.0
LONG_SLEEP = datetime.timedelta(seconds=2)
SCENARIOS = ("group", "kind", "budget", "shape")

_effects = pathlib.Path()


def _effect(step: str, attempt: int, result: object) -> object:
    with _effects.open("a") as out:
        out.write(f"{step} {attempt}\n")
    return result


def _fails(step: str, attempt: int) -> object:
    _effect(step, attempt, None)
    raise RuntimeError(f"{step} fails in the first version")


def function(scenario: str, version: int) -> tuple[mainspring.Client, mainspring.Function[Any]]:
    client = mainspring.Client(app_id="deploy-app", app_version=f"v{version}")

    @client.create_function(
        fn_id="deployed",
        trigger=mainspring.TriggerEvent(event="go"),
        retries=0 if scenario == "shape" else 3,  # shape: v2 fails at once, not in hours
    )
    async def deployed(ctx: mainspring.Context) -> object:
        attempt = ctx.attempt
        if scenario == "group":
            second = (
                (lambda: ctx.step.run("p2", _fails, "p2", attempt))
                if version == 1
                else (lambda: ctx.step.run("p2x", _effect, "p2x", attempt, "new"))
            )
            return await ctx.group.parallel(
                (lambda: ctx.step.run("p1", _effect, "p1", attempt, "one"), second)
            )
        if scenario == "shape":
            fetched: Any = await ctx.step.run(
                "fetch", _effect, "fetch", attempt, {"amount": 5} if version == 1 else "five"
            )
            await ctx.step.sleep("long", LONG_SLEEP)
            return fetched.upper()
        if scenario == "kind":
            await ctx.step.run("first", _effect, "first", attempt, 1)
            if version == 1:
                await ctx.step.sleep("nap", datetime.timedelta(milliseconds=50))
            else:
                await ctx.step.run("nap", _effect, "nap", attempt, "charged")
            await ctx.step.sleep("long", LONG_SLEEP)
            return "slept"
        await ctx.step.run("before", _effect, "before", attempt, 1)
        if version == 1:
            return await ctx.step.run("charge", _fails, "charge", attempt)
        return await ctx.step.run("charge-v2", _effect, "charge-v2", attempt, attempt)

    return client, deployed


def _ready(db: pathlib.Path, scenario: str, run_id: str) -> bool:
    """Whether the run is where the test kills v1 (read from the store, as a restart will)."""
    with sqlite3.connect(db) as conn:
        if scenario in ("kind", "shape"):
            rows = conn.execute(
                "SELECT count(*) FROM jobs WHERE run_id = ? AND kind = 'sleep'", (run_id,)
            ).fetchone()
            recorded = conn.execute(
                "SELECT count(*) FROM steps WHERE run_id = ? AND user_id IN ('nap', 'fetch')",
                (run_id,),
            ).fetchone()
            return bool(rows[0] and recorded[0])
        retried = conn.execute(
            "SELECT count(*) FROM attempts WHERE run_id = ? AND op = 'StepError'", (run_id,)
        ).fetchone()
        return bool(retried[0])


async def serve(db: pathlib.Path, directory: pathlib.Path, mode: str, *, fresh: bool) -> int:
    scenario, _, version = mode.partition("-v")
    client, fn = function(scenario, int(version))
    later = mainspring.ManualClock(int(time.time() * 1000) + int(2 * RETRY_AFTER_S * 1000))
    engine = mainspring.Engine(
        client,
        [fn],
        database=db,
        durability="normal",
        retry_backoff=RETRY_AFTER_S,
        clock=later if version == "2" else None,
    )
    async with engine:
        sent = directory / "sent.json"
        if fresh:
            [event_id] = await engine.send(mainspring.Event(name="go"))
            sent.write_text(json.dumps(event_id))
        [run] = await engine.runs(json.loads(sent.read_text()))
        said = False
        while True:
            current = await engine.run(run.id)
            if current.status.finished:
                result = current.output if current.error is None else current.error
                print("done", current.status.value, json.dumps(result), flush=True)
                return 0
            if version == "1" and not said and _ready(db, scenario, run.id):
                said = True
                print("ready-to-kill", flush=True)
            await asyncio.sleep(0.01)


def main(argv: list[str]) -> int:
    global _effects
    modes = [f"{s}-v{v}" for s in SCENARIOS for v in (1, 2)]
    if len(argv) != 3 or argv[2] not in modes:
        print(f"usage: deploy_sigkill_app.py DB DIR {'|'.join(modes)}", file=sys.stderr)
        return 2
    db, directory = pathlib.Path(argv[0]), pathlib.Path(argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    _effects = directory / "effects.log"
    return asyncio.run(serve(db, directory, argv[2], fresh=not db.exists()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
