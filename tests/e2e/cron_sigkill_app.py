"""The app ``test_sigkill_cron.py`` kills: ``python cron_sigkill_app.py DB DIR run``.

One function, ``tick``, with the cron trigger ``* * * * *``, on an engine whose clock runs
:data:`SPEED` times faster than the wall clock from the anchor in ``DIR/clock.json``
(``{"real_ms", "virtual_ms"}``, written by the test): every process on the database reads
the same anchor, so each incarnation goes on with the same timeline, and a tick comes
every second of wall-clock time.

Each tick runs one step ``work``, whose handler appends ``"<scheduledAt> work start
<nonce>"`` to ``DIR/effects.log``, sleeps :data:`STEP_MS` of wall-clock time, appends
``"<scheduledAt> work end <nonce>"`` and returns the nonce; the run's output is
``{"tick": scheduledAt, "nonce": nonce}``.

Prints ``ready`` once the engine runs; stops the engine and exits 0 once ``DIR/stop``
exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import time
import uuid
from typing import Any

import mainspring

APP_ID = "cron-sigkill"
FUNCTION_ID = f"{APP_ID}-tick"
CLOCK_FILE = "clock.json"
EFFECTS_FILE = "effects.log"
STOP_FILE = "stop"
#: Virtual milliseconds per wall-clock millisecond: a cron minute is a second.
SPEED = 60
#: How long the step's handler takes, in wall-clock milliseconds.
STEP_MS = 150


class FastClock:
    """The engine's clock (``mainspring.engine.clock.Clock``), ``SPEED`` times faster than
    the wall clock from a shared anchor."""

    def __init__(self, real_ms: int, virtual_ms: int) -> None:
        self.real_ms = real_ms
        self.virtual_ms = virtual_ms

    def now_ms(self) -> int:
        return self.virtual_ms + int((time.time() * 1000 - self.real_ms) * SPEED)

    async def wait(self, wake: asyncio.Event, until_ms: int) -> None:
        delay = (until_ms - self.now_ms()) / SPEED / 1000
        if delay <= 0:
            return
        timer = asyncio.get_running_loop().call_later(delay, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()


_effects_fd: int | None = None


def _append(directory: pathlib.Path, line: str) -> None:
    """One ``write`` on an ``O_APPEND`` descriptor: lines never interleave or tear."""
    global _effects_fd
    if _effects_fd is None:
        path = directory / EFFECTS_FILE
        _effects_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_effects_fd, (line + "\n").encode())


def build(directory: pathlib.Path) -> tuple[mainspring.Client, mainspring.Function[Any]]:
    client = mainspring.Client(app_id=APP_ID)

    async def work(tick: str) -> str:
        nonce = uuid.uuid4().hex
        _append(directory, f"{tick} work start {nonce}")
        await asyncio.sleep(STEP_MS / 1000)
        _append(directory, f"{tick} work end {nonce}")
        return nonce

    @client.create_function(fn_id="tick", trigger=mainspring.TriggerCron(cron="* * * * *"))
    async def tick(ctx: mainspring.Context) -> dict[str, str]:
        scheduled = str(ctx.event.data["scheduledAt"])
        nonce = await ctx.step.run("work", work, scheduled)
        return {"tick": scheduled, "nonce": nonce}

    return client, tick


async def serve(db: pathlib.Path, directory: pathlib.Path) -> int:
    anchor = json.loads((directory / CLOCK_FILE).read_text())
    clock = FastClock(int(anchor["real_ms"]), int(anchor["virtual_ms"]))
    client, tick = build(directory)
    async with mainspring.Engine(client, [tick], database=db, durability="normal", clock=clock):
        print("ready", os.getpid(), flush=True)
        while not (directory / STOP_FILE).exists():  # noqa: ASYNC110 (a file, not an event)
            await asyncio.sleep(0.01)
    print("stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] != "run":
        print("usage: cron_sigkill_app.py DB DIR run", file=sys.stderr)
        return 2
    return asyncio.run(serve(pathlib.Path(argv[0]), pathlib.Path(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
