"""The app ``test_sigkill_lifecycle.py`` kills: ``python lifecycle_app.py DB DIR start|resume``.

Four functions are triggered by one ``lifecycle/go`` event (``data={"k": k}``), and one more
is only ever invoked:

* ``sleeper`` (async): step ``a``, a durable sleep ``nap`` of :data:`NAP_MS`, step ``b``;
* ``waiter`` (async): step ``ask``, ``wait_for_event("reply")`` for a ``lifecycle/reply``
  event with the same ``k`` (timeout :data:`REPLY_TIMEOUT_MS`, far beyond the test), step
  ``after``; its output names the reply it got;
* ``parent`` (async): step ``prep``, ``invoke("call")`` of ``child`` with ``{"k": k}``, step
  ``post``; its output holds the child's output;
* ``child`` (async, triggered by an event nobody sends): step ``c1``, a durable sleep
  ``cnap`` of :data:`CHILD_NAP_MS`, step ``c2``;
* ``timeouter`` (sync): step ``t1``, ``wait_for_event("late")`` for a ``lifecycle/late``
  event with the same ``k`` that never comes (timeout :data:`LATE_TIMEOUT_MS`), step ``t2``.

Every step handler appends ``"<run-key> <step> start <nonce>"`` to ``DIR/effects.log``, sleeps
(:data:`DURATIONS_MS`), appends ``"<run-key> <step> end <nonce>"`` and returns
``{"v": value(run_key, step), "nonce": nonce}``, so the memo the engine recorded names the
one execution it kept, and every output is known in advance (:func:`expected_output`).

Events to send: only one engine process may open the database (a lock file), so the test
cannot send events itself. It drops ``DIR/outbox/NAME.json`` files instead (written
atomically), each ``{"events": [{"name", "data", "id"}], "hold_ms": int}``. The app polls
the directory; for each file it renames it to ``NAME.claimed`` (never sent twice, even if
killed), sends the events with ``engine.send``, writes the returned ids to ``NAME.sent``
and prints ``outbox NAME``. Then, if ``hold_ms`` is set, it blocks its event loop that long
so the test can kill it after the events are recorded and before the engine acts on them.

``start`` sends :data:`RUNS_PER_FUNCTION` go events when the database is new (ids
``go-<k>``) and writes their ids to ``sent.json``; ``resume`` only runs the engine. Either
way the process waits until every triggered run has finished, writes ``done.json`` and exits
0. It prints ``ready``, ``sent`` and ``done`` on stdout as it goes.
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

APP_ID = "lifecycle"
GO_EVENT = "lifecycle/go"
REPLY_EVENT = "lifecycle/reply"
LATE_EVENT = "lifecycle/late"
NEVER_EVENT = "lifecycle/never"
RUNS_PER_FUNCTION = 3
#: Functions the go event starts (``child`` runs only when a ``parent`` invokes it).
TRIGGERED = ("sleeper", "waiter", "parent", "timeouter")
FUNCTIONS = (*TRIGGERED, "child")

#: Steps with a handler, per function.
STEPS: dict[str, tuple[str, ...]] = {
    "sleeper": ("a", "b"),
    "waiter": ("ask", "after"),
    "parent": ("prep", "post"),
    "child": ("c1", "c2"),
    "timeouter": ("t1", "t2"),
}
#: Steps the engine finishes itself (no handler): step id -> op recorded.
ENGINE_STEPS: dict[str, dict[str, str]] = {
    "sleeper": {"nap": "Sleep"},
    "waiter": {"reply": "WaitForEvent"},
    "parent": {"call": "InvokeFunction"},
    "child": {"cnap": "Sleep"},
    "timeouter": {"late": "WaitForEvent"},
}

DURATIONS_MS: dict[str, int] = {
    "a": 100,
    "b": 100,
    "ask": 100,
    "after": 100,
    "prep": 400,
    "post": 100,
    "c1": 200,
    "c2": 400,
    "t1": 100,
    "t2": 100,
}
NAP_MS = 1500
CHILD_NAP_MS = 1500
LATE_TIMEOUT_MS = 1500
REPLY_TIMEOUT_MS = 600_000
INVOKE_TIMEOUT_MS = 600_000
WAIT_CONDITION = "event.data.k == async.data.k"

EFFECTS_FILE = "effects.log"
SENT_FILE = "sent.json"
DONE_FILE = "done.json"
OUTBOX_DIR = "outbox"
OUTBOX_POLL = 0.01


class Effect(TypedDict):
    v: int
    nonce: str


def run_key(function: str, k: int) -> str:
    return f"{function}-{k}"


def value(key: str, step: str) -> int:
    return zlib.crc32(f"{key}/{step}".encode()) % 1000


def reply_id(k: int) -> str:
    """The id of the reply the test sends first for waiter ``k``."""
    return f"reply-{k}"


def reply_answer(k: int) -> str:
    return f"yes-{k}"


def child_output(k: int) -> dict[str, Any]:
    key = run_key("child", k)
    return {"k": k, "c1": value(key, "c1"), "c2": value(key, "c2")}


def expected_output(function: str, k: int) -> Any:
    key = run_key(function, k)

    def v(step: str) -> int:
        return value(key, step)

    if function == "sleeper":
        return [v("a"), v("b")]
    if function == "waiter":
        return {
            "ask": v("ask"),
            "reply": {"id": reply_id(k), "answer": reply_answer(k)},
            "after": v("after"),
        }
    if function == "parent":
        return {"prep": v("prep"), "child": child_output(k), "post": v("post")}
    if function == "child":
        return child_output(k)
    if function == "timeouter":
        return {"t1": v("t1"), "late": None, "t2": v("t2")}
    raise AssertionError(function)


# -- side effects ----------------------------------------------------------------------

_effects_fd: int | None = None


def _effect(line: str) -> None:
    """Append one line with one write (O_APPEND: lines from threads never interleave)."""
    assert _effects_fd is not None, "the effects file is not open"
    os.write(_effects_fd, (line + "\n").encode())


async def async_effect(key: str, step: str) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{key} {step} start {nonce}")
    await asyncio.sleep(DURATIONS_MS[step] / 1000)
    _effect(f"{key} {step} end {nonce}")
    return {"v": value(key, step), "nonce": nonce}


def sync_effect(key: str, step: str) -> Effect:
    nonce = uuid.uuid4().hex
    _effect(f"{key} {step} start {nonce}")
    time.sleep(DURATIONS_MS[step] / 1000)
    _effect(f"{key} {step} end {nonce}")
    return {"v": value(key, step), "nonce": nonce}


# -- the functions ---------------------------------------------------------------------

client = mainspring.Client(app_id=APP_ID)
TRIGGER = mainspring.TriggerEvent(event=GO_EVENT)


def _k(ctx: mainspring.Context | mainspring.ContextSync) -> int:
    k = ctx.event.data["k"]
    assert isinstance(k, int)
    return k


def _stepper(ctx: mainspring.Context, name: str) -> Callable[[str], Awaitable[Effect]]:
    key = run_key(name, _k(ctx))

    def step(step_id: str) -> Awaitable[Effect]:
        return ctx.step.run(step_id, async_effect, key, step_id)

    return step


@client.create_function(fn_id="sleeper", trigger=TRIGGER, retries=3)
async def sleeper(ctx: mainspring.Context) -> Any:
    step = _stepper(ctx, "sleeper")
    a = await step("a")
    await ctx.step.sleep("nap", NAP_MS)
    b = await step("b")
    return [a["v"], b["v"]]


@client.create_function(fn_id="waiter", trigger=TRIGGER, retries=3)
async def waiter(ctx: mainspring.Context) -> Any:
    step = _stepper(ctx, "waiter")
    ask = await step("ask")
    reply = await ctx.step.wait_for_event(
        "reply", event=REPLY_EVENT, if_exp=WAIT_CONDITION, timeout=REPLY_TIMEOUT_MS
    )
    after = await step("after")
    got = None if reply is None else {"id": reply.id, "answer": reply.data["answer"]}
    return {"ask": ask["v"], "reply": got, "after": after["v"]}


@client.create_function(fn_id="child", trigger=mainspring.TriggerEvent(event=NEVER_EVENT))
async def child(ctx: mainspring.Context) -> Any:
    step = _stepper(ctx, "child")
    c1 = await step("c1")
    await ctx.step.sleep("cnap", CHILD_NAP_MS)
    c2 = await step("c2")
    return {"k": _k(ctx), "c1": c1["v"], "c2": c2["v"]}


@client.create_function(fn_id="parent", trigger=TRIGGER, retries=3)
async def parent(ctx: mainspring.Context) -> Any:
    step = _stepper(ctx, "parent")
    prep = await step("prep")
    result = await ctx.step.invoke(
        "call", function=child, data={"k": _k(ctx)}, timeout=INVOKE_TIMEOUT_MS
    )
    post = await step("post")
    return {"prep": prep["v"], "child": result, "post": post["v"]}


@client.create_function(fn_id="timeouter", trigger=TRIGGER, retries=3)
def timeouter(ctx: mainspring.ContextSync) -> Any:
    key = run_key("timeouter", _k(ctx))
    t1 = ctx.step.run("t1", sync_effect, key, "t1")
    late = ctx.step.wait_for_event(
        "late", event=LATE_EVENT, if_exp=WAIT_CONDITION, timeout=LATE_TIMEOUT_MS
    )
    t2 = ctx.step.run("t2", sync_effect, key, "t2")
    return {"t1": t1["v"], "late": None if late is None else late.id, "t2": t2["v"]}


FUNCTION_OBJECTS: tuple[mainspring.Function[Any], ...] = (
    sleeper,
    waiter,
    child,
    parent,
    timeouter,
)


# -- the process -----------------------------------------------------------------------


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write atomically: a reader sees the whole file or none (the temp name is no .json)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_event_ids(directory: pathlib.Path) -> list[str] | None:
    path = directory / SENT_FILE
    if not path.exists():
        return None
    ids = json.loads(path.read_text())
    assert isinstance(ids, list)
    return [str(i) for i in ids]


def _claim(outbox: pathlib.Path) -> list[tuple[str, dict[str, Any]]]:
    """Claim every ``*.json`` file of ``outbox`` (renamed first: never sent twice)."""
    claimed: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(outbox.glob("*.json")):
        target = path.with_suffix(".claimed")
        os.replace(path, target)
        claimed.append((path.stem, json.loads(target.read_text())))
    return claimed


async def _outbox(engine: mainspring.Engine, outbox: pathlib.Path) -> None:
    """Send the events of every ``*.json`` file the test drops into ``outbox``."""
    while True:
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
                # (run the resume jobs they queued) before the test kills the process.
                time.sleep(hold_ms / 1000)  # noqa: ASYNC251
        await asyncio.sleep(OUTBOX_POLL)


async def serve(db: pathlib.Path, directory: pathlib.Path, mode: str, *, fresh: bool) -> int:
    engine = mainspring.Engine(
        client, FUNCTION_OBJECTS, database=db, durability="normal", retry_backoff=0.01
    )
    outbox = directory / OUTBOX_DIR
    outbox.mkdir(exist_ok=True)
    async with engine:
        print("ready", os.getpid(), flush=True)
        sender = asyncio.create_task(_outbox(engine, outbox))
        try:
            if mode == "start" and fresh:
                events = [
                    mainspring.Event(name=GO_EVENT, data={"k": k}, id=f"go-{k}")
                    for k in range(RUNS_PER_FUNCTION)
                ]
                write_json(directory / SENT_FILE, await engine.send(events))
                print("sent", flush=True)
            event_ids = _read_event_ids(directory)
            if event_ids is None:
                print(f"no {SENT_FILE}: nothing to resume", file=sys.stderr, flush=True)
                return 2
            summary: list[dict[str, Any]] = []
            for event_id in event_ids:
                for run in await engine.runs(event_id):
                    finished = await engine.wait(run.id, timeout=120)
                    summary.append(
                        {
                            "run_id": finished.id,
                            "function_id": finished.function_id,
                            "status": finished.status.value,
                            "output": finished.output,
                        }
                    )
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        write_json(directory / DONE_FILE, summary)
        print("done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    global _effects_fd
    if len(argv) != 3 or argv[2] not in ("start", "resume"):
        print("usage: lifecycle_app.py DB DIR start|resume", file=sys.stderr)
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
