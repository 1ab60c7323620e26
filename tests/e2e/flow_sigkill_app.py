"""The app ``test_sigkill_flow.py`` kills: ``python flow_sigkill_app.py DB DIR serve|finish``.

Four functions with flow control, each triggered by its own event; every event carries a
``tag`` in its data (also its event id) that names it in the side-effect log and in the
runs' outputs:

* ``batch`` (async): ``Batch(max_size=5, timeout=5s)``; one step ``work`` whose run key is
  ``batch:<tag>,<tag>,...`` (the tags of the batch's events, in order); its output is
  ``{"tags": [...], "v": ...}``;
* ``debounce`` (sync): ``Debounce(period=4s, key="event.data.k")``; one step ``work`` (run
  key ``debounce:<tag>``); its output names the event it ran with and how many it got;
* ``limited`` (async): ``Concurrency(limit=2, key="event.data.g")``; steps ``one`` and
  ``two`` (run key ``limited:<tag>``);
* ``whole`` (async): ``RunConcurrency(limit=1)``; step ``a``, a durable sleep ``nap`` of
  :data:`NAP_MS`, step ``b`` (run key ``whole:<tag>``).

Every step handler appends ``"<run-key> <step> start <nonce>"`` to ``DIR/effects.log``, sleeps
(:data:`DURATIONS_MS`), appends ``"<run-key> <step> end <nonce>"`` and returns
``{"v": value(run_key, step), "nonce": nonce}``, so the memo the engine recorded names the one
execution it kept, and every output is known in advance.

Events to send: only one engine process may open the database, so the test drops
``DIR/outbox/NAME.json`` files (written atomically), each ``{"events": [{"name", "data",
"id"}], "hold_ms": int}``. The app polls the directory; for each file, in name order, it
renames it to ``NAME.claimed`` (never sent twice, even if killed), sends its events with one
``engine.send``, writes the returned (internal) ids to ``NAME.sent`` and prints ``outbox
NAME``; then, if ``hold_ms`` is set, it blocks its event loop that long, so the test can kill
it after the events are recorded and before the engine acts on them.

``serve`` runs until killed. ``finish`` waits until every run of every event sent so far
(``outbox/*.sent``) has finished, writes ``done.json`` and exits 0. The app prints
``ready`` once the engine runs and ``done`` at the end.
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
from typing import Any, TypedDict

import mainspring

APP_ID = "flowkill"
BATCH_EVENT = "flowkill/batch"
DEBOUNCE_EVENT = "flowkill/debounce"
LIMITED_EVENT = "flowkill/limited"
WHOLE_EVENT = "flowkill/whole"
FUNCTIONS = ("batch", "debounce", "limited", "whole")

BATCH_SIZE = 5
BATCH_TIMEOUT_MS = 5000
DEBOUNCE_PERIOD_MS = 4000
#: Step calls of ``limited`` in flight at once, per ``event.data.g``.
LIMIT = 2
NAP_MS = 2000

#: Steps with a handler, per function, in the order they run.
STEPS: dict[str, tuple[str, ...]] = {
    "batch": ("work",),
    "debounce": ("work",),
    "limited": ("one", "two"),
    "whole": ("a", "b"),
}
DURATIONS_MS: dict[tuple[str, str], int] = {
    ("batch", "work"): 800,
    ("debounce", "work"): 100,
    ("limited", "one"): 250,
    ("limited", "two"): 250,
    ("whole", "a"): 100,
    ("whole", "b"): 100,
}

EFFECTS_FILE = "effects.log"
DONE_FILE = "done.json"
OUTBOX_DIR = "outbox"
OUTBOX_POLL = 0.01


class Effect(TypedDict):
    v: int
    nonce: str


def function_of(run_key: str) -> str:
    return run_key.split(":", 1)[0]


def value(run_key: str, step: str) -> int:
    return zlib.crc32(f"{run_key}/{step}".encode()) % 1000


def step_ms(run_key: str, step: str) -> int:
    return DURATIONS_MS[(function_of(run_key), step)]


def batch_key(tags: list[str]) -> str:
    return "batch:" + ",".join(tags)


def expected_output(run_key: str, event: dict[str, Any], count: int) -> Any:
    """The output of the completed run ``run_key`` (first event ``event``, ``count`` events)."""
    function, tag = run_key.split(":", 1)
    if function == "batch":
        return {"tags": tag.split(","), "v": value(run_key, "work")}
    if function == "debounce":
        return {"k": event["data"]["k"], "tag": tag, "events": count, "v": value(run_key, "work")}
    if function == "limited":
        return {"tag": tag, "v": [value(run_key, "one"), value(run_key, "two")]}
    if function == "whole":
        return {"tag": tag, "v": [value(run_key, "a"), value(run_key, "b")]}
    raise AssertionError(run_key)


# -- side effects ----------------------------------------------------------------------

_effects_fd: int | None = None


def _effect(line: str) -> None:
    """Append one line with one write (O_APPEND: lines from threads never interleave)."""
    assert _effects_fd is not None, "the effects file is not open"
    os.write(_effects_fd, (line + "\n").encode())


async def async_effect(run_key: str, step: str) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{run_key} {step} start {nonce}")
    await asyncio.sleep(step_ms(run_key, step) / 1000)
    _effect(f"{run_key} {step} end {nonce}")
    return {"v": value(run_key, step), "nonce": nonce}


def sync_effect(run_key: str, step: str) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{run_key} {step} start {nonce}")
    time.sleep(step_ms(run_key, step) / 1000)
    _effect(f"{run_key} {step} end {nonce}")
    return {"v": value(run_key, step), "nonce": nonce}


# -- the functions ---------------------------------------------------------------------

client = mainspring.Client(app_id=APP_ID)


def _tag(event: mainspring.Event) -> str:
    tag = event.data["tag"]
    assert isinstance(tag, str)
    return tag


@client.create_function(
    fn_id="batch",
    trigger=mainspring.TriggerEvent(event=BATCH_EVENT),
    batch_events=mainspring.Batch(max_size=BATCH_SIZE, timeout=BATCH_TIMEOUT_MS),
    retries=3,
)
async def batch(ctx: mainspring.Context) -> Any:
    tags = [_tag(event) for event in ctx.events]
    work = await ctx.step.run("work", async_effect, batch_key(tags), "work")
    return {"tags": tags, "v": work["v"]}


@client.create_function(
    fn_id="debounce",
    trigger=mainspring.TriggerEvent(event=DEBOUNCE_EVENT),
    debounce=mainspring.Debounce(period=DEBOUNCE_PERIOD_MS, key="event.data.k"),
    retries=3,
)
def debounce(ctx: mainspring.ContextSync) -> Any:
    tag = _tag(ctx.event)
    work = ctx.step.run("work", sync_effect, f"debounce:{tag}", "work")
    return {"k": ctx.event.data["k"], "tag": tag, "events": len(ctx.events), "v": work["v"]}


@client.create_function(
    fn_id="limited",
    trigger=mainspring.TriggerEvent(event=LIMITED_EVENT),
    concurrency=[mainspring.Concurrency(limit=LIMIT, key="event.data.g")],
    retries=3,
)
async def limited(ctx: mainspring.Context) -> Any:
    tag = _tag(ctx.event)
    one = await ctx.step.run("one", async_effect, f"limited:{tag}", "one")
    two = await ctx.step.run("two", async_effect, f"limited:{tag}", "two")
    return {"tag": tag, "v": [one["v"], two["v"]]}


@client.create_function(
    fn_id="whole",
    trigger=mainspring.TriggerEvent(event=WHOLE_EVENT),
    concurrency=[mainspring.RunConcurrency(limit=1)],
    retries=3,
)
async def whole(ctx: mainspring.Context) -> Any:
    tag = _tag(ctx.event)
    a = await ctx.step.run("a", async_effect, f"whole:{tag}", "a")
    await ctx.step.sleep("nap", NAP_MS)
    b = await ctx.step.run("b", async_effect, f"whole:{tag}", "b")
    return {"tag": tag, "v": [a["v"], b["v"]]}


FUNCTION_OBJECTS: tuple[mainspring.Function[Any], ...] = (batch, debounce, limited, whole)


# -- the process -----------------------------------------------------------------------


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write atomically: a reader sees the whole file or none (the temp name is no .json)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _claim(outbox: pathlib.Path) -> list[tuple[str, dict[str, Any]]]:
    """Claim every ``*.json`` file of ``outbox`` (renamed first: never sent twice)."""
    claimed: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(outbox.glob("*.json")):
        target = path.with_suffix(".claimed")
        os.replace(path, target)
        claimed.append((path.stem, json.loads(target.read_text())))
    return claimed


async def _send_files(engine: mainspring.Engine, outbox: pathlib.Path) -> None:
    """Send the events of every ``*.json`` file the test dropped into ``outbox``."""
    for name, spec in await asyncio.to_thread(_claim, outbox):
        events = [
            mainspring.Event(name=e["name"], data=e["data"], id=e["id"]) for e in spec["events"]
        ]
        ids = await engine.send(events)
        write_json(outbox / f"{name}.sent", ids)
        print("outbox", name, flush=True)
        hold_ms = int(spec.get("hold_ms", 0))
        if hold_ms:
            # Block the event loop on purpose: the engine cannot act on these events
            # (start the batch they filled) before the test kills the process.
            time.sleep(hold_ms / 1000)  # noqa: ASYNC251


async def _outbox(engine: mainspring.Engine, outbox: pathlib.Path) -> None:
    while True:
        await _send_files(engine, outbox)
        await asyncio.sleep(OUTBOX_POLL)


def _sent_ids(outbox: pathlib.Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(outbox.glob("*.sent")):
        loaded = json.loads(path.read_text())
        assert isinstance(loaded, list)
        ids += [str(i) for i in loaded]
    return ids


async def _finish(engine: mainspring.Engine, directory: pathlib.Path) -> None:
    """Wait for every run of every event sent so far; write their summary."""
    summary: dict[str, dict[str, Any]] = {}
    for event_id in _sent_ids(directory / OUTBOX_DIR):
        for run in await engine.runs(event_id):
            if run.id in summary:
                continue  # a batch: one run for several events
            finished = await engine.wait(run.id, timeout=60)
            summary[run.id] = {
                "run_id": finished.id,
                "function_id": finished.function_id,
                "status": finished.status.value,
            }
    write_json(directory / DONE_FILE, list(summary.values()))


async def serve(db: pathlib.Path, directory: pathlib.Path, mode: str) -> int:
    engine = mainspring.Engine(
        client, FUNCTION_OBJECTS, database=db, durability="normal", retry_backoff=0.01
    )
    outbox = directory / OUTBOX_DIR
    outbox.mkdir(exist_ok=True)
    async with engine:
        print("ready", os.getpid(), flush=True)
        if mode == "serve":
            await _outbox(engine, outbox)  # until killed
        await _send_files(engine, outbox)  # files dropped before the start, if any
        await _finish(engine, directory)
        print("done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    global _effects_fd
    if len(argv) != 3 or argv[2] not in ("serve", "finish"):
        print("usage: flow_sigkill_app.py DB DIR serve|finish", file=sys.stderr)
        return 2
    db, directory, mode = pathlib.Path(argv[0]), pathlib.Path(argv[1]), argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    _effects_fd = os.open(directory / EFFECTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return asyncio.run(serve(db, directory, mode))
    finally:
        os.close(_effects_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
