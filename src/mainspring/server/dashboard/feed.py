"""Live updates for the dashboard's pages: which runs changed, pushed as server-sent events.

One watcher per server, running only while a page listens (nothing is polled otherwise).
It asks SQLite whether anything was committed since its last look (``PRAGMA data_version``
on a connection of its own: a counter that moves when another connection commits, so an
idle server costs one pragma per tick), and only then reads what changed: the newest runs
(new ones, or ones whose status moved) and the runs a page watches (their status, their
history's length, their queued work).

A server-sent-event stream never ends on its own, which would keep uvicorn waiting at
shutdown: streams end when uvicorn is asked to exit (see :func:`_watch_exit`), as
``sse-starlette`` does; the browser reconnects to the next server by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from mainspring.engine.engine import Engine
from mainspring.errors import MainspringError

#: Seconds between two looks at the database while someone listens.
TICK_SECONDS = 0.15
#: Seconds between two keep-alive comments on an idle stream.
HEARTBEAT_SECONDS = 15.0
#: How many of the newest runs are compared between looks.
NEWEST = 50

_exiting = False


def _watch_exit() -> None:
    """Note when uvicorn is told to exit, so that open streams end and let it stop."""
    try:
        import uvicorn
    except ImportError:  # served by something else: streams end when clients leave
        return
    original = uvicorn.Server.handle_exit
    if getattr(original, "_mainspring_dashboard", False):
        return

    def handle_exit(self: uvicorn.Server, sig: int, frame: Any) -> None:
        global _exiting
        _exiting = True
        original(self, sig, frame)

    handle_exit._mainspring_dashboard = True  # type: ignore[attr-defined]
    uvicorn.Server.handle_exit = handle_exit  # type: ignore[method-assign]


class _Listener:
    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        # A page rendered before the watcher's look that this listener joins may have
        # missed a change: its first message, sent once that look is the baseline,
        # makes it fetch what it shows again (on first connect and on every reconnect).
        self.joined = True
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=16)

    def push(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a slow page gets the next one
            self.queue.put_nowait(message)


class RunFeed:
    """Changes of runs, for the pages that listen."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._listeners: set[_Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._newest: dict[str, tuple[Any, ...]] = {}
        self._watched: dict[str, tuple[Any, ...]] = {}
        self._version: int | None = None
        self._db: sqlite3.Connection | None = None

    # -- the watcher -----------------------------------------------------------------

    def _open(self) -> None:
        store = getattr(self._engine, "_store", None)
        path = getattr(store, "path", None)
        if self._db is None and isinstance(path, str) and os.path.exists(path):
            try:
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, check_same_thread=False
                )
            except sqlite3.Error:
                self._db = None

    def _changed(self) -> bool:
        """Whether the database moved since the last look (always True without a signal)."""
        if self._db is None:
            # PostgreSQL: other processes commit too, and nothing cheaper than the reads
            # themselves says whether they did; this runs only while a page listens.
            return True
        try:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return True
        moved = version != self._version
        self._version = version
        return bool(moved)

    async def _run_signature(self, run_id: str) -> tuple[Any, ...]:
        try:
            run = await self._engine.run(run_id)
        except MainspringError:
            return ("gone",)
        history = await self._engine.history(run_id)
        last = history[-1].ended_at if history else None
        jobs = await self._engine.jobs(run_id) if not run.status.finished else []
        return (run.status.value, run.ended_at, len(history), last, len(jobs))

    async def _look(self, first: bool) -> None:
        joined = [listener for listener in self._listeners if listener.joined]
        if not self._changed() and not first and not joined:
            return
        runs = await self._engine.list_runs(limit=NEWEST)
        newest = {run.id: (run.status.value, run.started_at, run.ended_at) for run in runs}
        changed = [] if first else [i for i, sig in newest.items() if self._newest.get(i) != sig]
        self._newest = newest
        watched = {ls.run_id for ls in self._listeners if ls.run_id is not None}
        moved: set[str] = set()
        for run_id in watched:
            signature = await self._run_signature(run_id)
            if self._watched.get(run_id) not in (None, signature):
                moved.add(run_id)
            self._watched[run_id] = signature
        for run_id in set(self._watched) - watched:
            del self._watched[run_id]
        statuses = {i: newest[i][0] for i in changed}
        for listener in list(self._listeners):
            if listener.joined:  # after the baseline above: nothing falls in between
                listener.joined = False
                listener.push({"runs": [listener.run_id] if listener.run_id else changed})
            elif listener.run_id is None:
                if changed:
                    listener.push({"runs": changed, "statuses": statuses})
            elif listener.run_id in moved or listener.run_id in changed:
                listener.push({"runs": [listener.run_id]})

    async def _watch(self) -> None:
        self._open()
        first = True
        try:
            while self._listeners and not _exiting:
                try:
                    await self._look(first)
                except MainspringError:  # the engine is stopping
                    return
                first = False
                await asyncio.sleep(TICK_SECONDS)
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- listeners -------------------------------------------------------------------

    async def stream(self, run_id: str | None) -> AsyncGenerator[bytes, None]:
        """Server-sent events for one page: ``event: runs`` with the ids of runs that
        changed (any run, or the run ``run_id`` only)."""
        _watch_exit()
        listener = _Listener(run_id)
        self._listeners.add(listener)
        if self._task is None or self._task.done():
            self._newest, self._watched, self._version = {}, {}, None
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            yield b"retry: 1000\n: connected\n\n"
            idle = 0.0
            while not _exiting:
                try:
                    message = await asyncio.wait_for(listener.queue.get(), 0.5)
                except TimeoutError:
                    idle += 0.5
                    if idle >= HEARTBEAT_SECONDS:
                        idle = 0.0
                        yield b": keep-alive\n\n"
                    continue
                idle = 0.0
                yield b"event: runs\ndata: " + orjson.dumps(message) + b"\n\n"
        finally:
            self._listeners.discard(listener)
