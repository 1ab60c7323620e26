"""The engine ``test_sigkill_held.py`` kills: ``python held_sigkill_app.py DB DIR MODE``.

One embedded engine on ``DB``, serving ``napper`` (step ``a``, a durable sleep of
:data:`NAP_MS`, step ``b``) and ``other``, or, as after a deploy that dropped it, only
``other``. ``MODE``:

* ``start``: napper served; sends one ``nap`` event when the database is new;
* ``without``: napper not served, grace period :data:`GRACE_MS`;
* ``without-short``: napper not served, grace period :data:`SHORT_GRACE_MS`;
* ``with``: napper served again.

Whatever the mode, the process prints what it sees of the run, one line at a time, and
exits 0 once the run has finished: ``sleeping <run id>`` once the nap is stored,
``held <run id> <since> <until>`` once it is held (``waiting_for``), and
``done <status> <output or error as JSON>``. Step handlers append ``<step> <pid>`` to
``DIR/effects.log`` so the test sees which process ran them.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import pathlib
import sys
from typing import Any

import mainspring

APP_ID = "held-app"
NAPPER = f"{APP_ID}-napper"
NAP_MS = 1500
GRACE_MS = 3_600_000
SHORT_GRACE_MS = 2_000
EFFECTS_FILE = "effects.log"
SENT_FILE = "sent.json"
MODES = ("start", "without", "without-short", "with")

_effects = pathlib.Path()


def _effect(step: str) -> int:
    with _effects.open("a") as out:
        out.write(f"{step} {os.getpid()}\n")
    return {"a": 1, "b": 2}[step]


def app(served: bool) -> tuple[mainspring.Client, list[mainspring.Function[Any]]]:
    client = mainspring.Client(app_id=APP_ID)

    @client.create_function(fn_id="napper", trigger=mainspring.TriggerEvent(event="nap"))
    async def napper(ctx: mainspring.Context) -> list[int]:
        a = await ctx.step.run("a", _effect, "a")
        await ctx.step.sleep("nap", datetime.timedelta(milliseconds=NAP_MS))
        b = await ctx.step.run("b", _effect, "b")
        return [a, b]

    @client.create_function(fn_id="other", trigger=mainspring.TriggerEvent(event="other"))
    async def other(ctx: mainspring.Context) -> str:
        return "ok"

    return client, [napper, other] if served else [other]


def _sent(directory: pathlib.Path, event_id: str | None = None) -> str:
    """The event id of the run, written once by ``start``."""
    path = directory / SENT_FILE
    if event_id is not None:
        path.write_text(json.dumps(event_id))
    found: str = json.loads(path.read_text())
    return found


async def serve(db: pathlib.Path, directory: pathlib.Path, mode: str, *, fresh: bool) -> int:
    served = mode in ("start", "with")
    grace = SHORT_GRACE_MS if mode == "without-short" else GRACE_MS
    client, fns = app(served)
    engine = mainspring.Engine(
        client,
        fns,
        database=db,
        durability="normal",
        retry_backoff=0.01,
        missing_function_grace=datetime.timedelta(milliseconds=grace),
    )
    async with engine:
        print("ready", flush=True)
        if mode == "start" and fresh:
            [event_id] = await engine.send(mainspring.Event(name="nap"))
            _sent(directory, event_id)
        [run] = await engine.runs(_sent(directory))
        said: set[str] = set()
        while True:
            current = await engine.run(run.id)
            if current.status.finished:
                result = current.output if current.error is None else current.error
                print("done", current.status.value, json.dumps(result), flush=True)
                return 0
            jobs = await engine.jobs(run.id)
            if "sleeping" not in said and any(job.kind.value == "sleep" for job in jobs):
                said.add("sleeping")
                print("sleeping", run.id, flush=True)
            waiting = await engine.waiting_for(run.id)
            if "held" not in said and waiting is not None:
                said.add("held")
                print("held", run.id, waiting["since"], waiting["until"], flush=True)
            await asyncio.sleep(0.01)


def main(argv: list[str]) -> int:
    global _effects
    if len(argv) != 3 or argv[2] not in MODES:
        print(f"usage: held_sigkill_app.py DB DIR {'|'.join(MODES)}", file=sys.stderr)
        return 2
    db, directory, mode = pathlib.Path(argv[0]), pathlib.Path(argv[1]), argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    _effects = directory / EFFECTS_FILE
    return asyncio.run(serve(db, directory, mode, fresh=not db.exists()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
