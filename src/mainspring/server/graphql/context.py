"""Where GraphQL queries run, and what their resolvers read through.

Queries run in a thread of their own with its own event loop (:func:`off_loop`): parsing,
validating, resolving and assembling a large answer is CPU work that would otherwise hold
up the server's loop (``/health``, event intake, the engine's jobs) for as long as it
takes. Only one such thread runs, however many queries: they take turns on its loop, and
the server's loop competes with one thread only for the interpreter (it gets it back
within the switch interval, 5 ms by default).

One pause no thread switch helps with is CPython's full garbage collection (generation 2):
it holds the interpreter for as long as it takes to scan every object alive, and a large
answer being built makes many. Measured on the worst query the limits allow (~400,000
objects at its peak), full collections set off in the GraphQL thread held ``/health`` up
for 100-350 ms each. So while queries run, full collections wait (:class:`QueryTime`):
younger generations are still collected as usual (they reclaim most cyclic garbage), and
the usual thresholds come back when the last query ends, its answer encoded and its
objects freed.

How much runs at once is bounded too: :data:`MAX_QUERIES` queries (memory), and
:data:`MAX_CALLS` engine calls handed to the server's loop (how long it goes without
polling its sockets).

The engine and its store belong to the server's loop: resolvers never call them directly
but through :meth:`Context.call`, which runs the engine's query method on that loop and
waits for its answer. Those reads are short (one SQL statement each, over a bounded page);
lists of them are batched (:class:`Loaders`), so a page of runs costs a fixed number of
statements, never one per run. What the engine keeps in memory (its apps and functions) is
copied once per query on the server's loop (:meth:`Context.of`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from strawberry.dataloader import DataLoader

from mainspring.engine.engine import Engine
from mainspring.engine.records import AppInfo, RerunOrigin, Run
from mainspring.sdk.function import Function
from mainspring.server.graphql.limits import MAX_PAGE
from mainspring.server.graphql.trace import build_trace
from mainspring.server.graphql.types import RunTraceSpan

T = TypeVar("T")
P = ParamSpec("P")

#: Queries worked on at once; more wait for their turn (the worst one the limits allow
#: holds some 50 MB while it runs: measured 88 MB for an idle server, 137 MB at its peak).
MAX_QUERIES = 4
#: Engine calls handed to the server's loop at once. The loop runs every call handed to it
#: before it polls its sockets again: 120 page reads arriving together (4 queries of 30
#: aliases) held ``/health`` up for ~200 ms; two at a time, each a few milliseconds.
MAX_CALLS = 2
#: Under a steady stream of queries, full collections still happen this often (seconds).
FULL_COLLECTION_EVERY = 10.0


@dataclasses.dataclass(frozen=True)
class _Worker:
    """The GraphQL thread, its loop, and the turns taken on it."""

    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    queries: asyncio.Semaphore
    calls: asyncio.Semaphore


_lock = threading.Lock()
_worker: _Worker | None = None


def _current() -> _Worker:
    """The GraphQL thread, started on first use (and again in a forked child, where the
    thread does not exist)."""
    global _worker
    with _lock:
        if _worker is None or not _worker.thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="mainspring-graphql", daemon=True
            )
            thread.start()
            _worker = _Worker(
                thread, loop, asyncio.Semaphore(MAX_QUERIES), asyncio.Semaphore(MAX_CALLS)
            )
        return _worker


async def off_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` in the GraphQL thread, when a query's turn comes; cancelling the caller
    cancels it there."""
    worker = _current()
    return await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(_turn(worker, work), worker.loop)
    )


async def _turn(worker: _Worker, work: Coroutine[Any, Any, T]) -> T:
    async with worker.queries:
        return await work


class QueryTime:
    """``with QueryTime():`` around a query's work: full collections wait until no query
    is running (see the module's docstring), or at most :data:`FULL_COLLECTION_EVERY`
    seconds. Entered and left in the GraphQL thread only."""

    _running = 0
    _saved: tuple[int, int, int] | None = None
    _since = 0.0

    def __enter__(self) -> None:
        cls = QueryTime
        cls._running += 1
        if cls._saved is None:
            cls._saved = young, middle, _ = gc.get_threshold()
            cls._since = time.monotonic()
            gc.set_threshold(young, middle, 2**31 - 1)

    def __exit__(self, *exc: object) -> None:
        cls = QueryTime
        cls._running -= 1
        if cls._saved is None:
            return
        if cls._running == 0:
            gc.set_threshold(*cls._saved)
            cls._saved = None
        elif time.monotonic() - cls._since > FULL_COLLECTION_EVERY:
            gc.collect()  # queries keep coming: collect now, as CPython would have
            cls._since = time.monotonic()


@dataclasses.dataclass
class Context:
    """``info.context`` of every resolver."""

    engine: Engine
    #: The server's loop, which the engine belongs to.
    loop: asyncio.AbstractEventLoop
    apps: list[AppInfo]
    functions: dict[str, Function[Any]]
    #: The app of each function id.
    app_of: dict[str, AppInfo]
    #: The app name given to functions that no app lists (the engine's own client).
    default_app: str
    _loaders: Loaders | None = None

    @staticmethod
    def of(engine: Engine) -> Context:
        """A query's context, made on the server's loop (it copies the engine's apps)."""
        apps = engine.app_list()
        return Context(
            engine=engine,
            loop=asyncio.get_running_loop(),
            apps=apps,
            functions=dict(engine.functions),
            app_of={fn.id: app for app in apps for fn in app.functions},
            default_app=engine.client.app_id,
        )

    async def call(
        self, method: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``await method(*args, **kwargs)`` on the server's loop (an engine query)."""
        if asyncio.get_running_loop() is self.loop:
            return await method(*args, **kwargs)
        async with _current().calls:
            work = method(*args, **kwargs)
            try:
                running = asyncio.run_coroutine_threadsafe(work, self.loop)
            except RuntimeError:  # the server's loop is closed: the server is gone
                work.close()
                raise
            return await asyncio.wrap_future(running)

    def function_name(self, function_id: str) -> str:
        fn = self.functions.get(function_id)
        return fn.name if fn is not None else function_id

    @property
    def loaders(self) -> Loaders:
        # Made on first use, in the GraphQL thread whose loop they batch on.
        if self._loaders is None:
            self._loaders = Loaders(self)
        return self._loaders


class Loaders:
    """Reads that resolvers ask for one item at a time, gathered into one engine query per
    batch (at most a page's worth, so that each read is short on the server's loop). What
    they load is kept for the query: a run's trace asked for under several aliases is read
    and built once."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.traces: DataLoader[Run, RunTraceSpan] = DataLoader(
            self._traces, max_batch_size=MAX_PAGE, cache_key_fn=lambda run: run.id
        )
        self.event_runs: DataLoader[str, list[Run]] = DataLoader(
            self._event_runs, max_batch_size=MAX_PAGE
        )
        self.rerun_origins: DataLoader[str, RerunOrigin | None] = DataLoader(
            self._rerun_origins, max_batch_size=MAX_PAGE
        )

    async def _traces(self, runs: Sequence[Run]) -> list[RunTraceSpan]:
        context = self._context
        histories = await context.call(context.engine.histories, runs)
        unfinished = [run.id for run in runs if not run.status.finished]
        jobs = await context.call(context.engine.jobs_for_runs, unfinished) if unfinished else {}
        return [
            RunTraceSpan.of(
                build_trace(
                    run,
                    context.function_name(run.function_id),
                    histories.get(run.id, []),
                    jobs.get(run.id, []),
                )
            )
            for run in runs
        ]

    async def _rerun_origins(self, run_ids: Sequence[str]) -> list[RerunOrigin | None]:
        found = await self._context.call(self._context.engine.rerun_origins, run_ids)
        return [found.get(run_id) for run_id in run_ids]

    async def _event_runs(self, event_ids: Sequence[str]) -> list[list[Run]]:
        engine = self._context.engine
        found = await self._context.call(engine.runs_for_events, event_ids)
        return [found.get(event_id, []) for event_id in event_ids]
