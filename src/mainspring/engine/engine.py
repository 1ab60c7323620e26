"""The embedded engine: a client's functions, run durably in this process on SQLite.

>>> engine = mainspring.Engine(client, [fn], database="runs.db")   # doctest: +SKIP
>>> async with engine:                                              # doctest: +SKIP
...     [event_id] = await engine.send(mainspring.Event(name="app/go"))
...     [run] = await engine.runs(event_id)
...     run = await engine.wait(run.id, timeout=10)
...     run.status, run.output

Killed at any moment, it loses nothing: jobs, step results and runs are in the database,
and on the next start every unfinished run continues where its last recorded step left it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import httpx
import orjson

from mainspring.engine import cron, finished, run_search
from mainspring.engine.apps import AppRegistry
from mainspring.engine.backoff import Backoff, backoff_from
from mainspring.engine.claims import JobClaims
from mainspring.engine.clock import Clock, SystemClock
from mainspring.engine.dispatch import Dispatcher
from mainspring.engine.executor import Executor
from mainspring.engine.flow.admission import Admission
from mainspring.engine.held import DEFAULT_GRACE, HeldRuns
from mainspring.engine.http_transport import AiohttpCallClient, HttpTransport
from mainspring.engine.intake import (
    IntakeResult,
    TriggerIndex,
    plan_intake,
    validate_events,
    write_intake,
)
from mainspring.engine.notices import UnmatchedEvents
from mainspring.engine.queries import EngineQueries, as_epoch_ms
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import (
    AppInfo,
    Job,
    JobKind,
    Run,
    RunStatus,
)
from mainspring.engine.remote import Registration, parse_registration
from mainspring.engine.rerun import rerun as start_rerun
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.runlog import RunLog
from mainspring.engine.store.backend import Durability, open_store
from mainspring.engine.store.contract import NewRun, SharedStore, Store, Tx
from mainspring.engine.transport import InProcessTransport, RoutingTransport
from mainspring.errors import MainspringError, RunNotFoundError
from mainspring.protocol import consts
from mainspring.protocol.event_ids import ids_from_seed
from mainspring.protocol.expressions import compile_expression
from mainspring.sdk.client import Client
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function

logger = logging.getLogger("mainspring.engine")


#: How often expired flow-control cells are deleted.
PURGE_EVERY_SECONDS = 3600


def partial_purge(now: int) -> Callable[[Tx], int]:
    """The unit that deletes flow-control cells expired at ``now``."""
    return lambda tx: tx.purge_cells(now)


#: How long a call may run sequential steps before answering (see ``chain_seconds``).
DEFAULT_CHAIN_SECONDS = 0.02


def _is_shared(store: Store) -> TypeGuard[SharedStore]:
    return bool(getattr(store, "shared", False))


class Engine(EngineQueries):
    """Runs ``functions`` of ``client`` in this process, durably, on a SQLite file.

    Args:
        client: the app's client; ``client.send`` and ``step.send_event`` go to this engine
            while it runs.
        functions: the functions to serve (on-failure handlers are added automatically).
        database: path of the SQLite file (created if missing).
        durability: ``"full"`` (fsync every commit; survives power loss) or ``"normal"``
            (survives a crash or SIGKILL of the process, not a power cut).
        concurrency: how many calls run at once.
        retry_backoff: seconds before a retry: a function of the failed attempt number, a
            schedule (the last entry repeats) or a fixed number. Default: the reference
            server's 15 s, 30 s, 1 m, ... with jitter.
        step_limit: the most steps one run may record (default 10,000).
        clock: a :class:`~mainspring.engine.clock.ManualClock` in tests.
        app_url: call the functions over HTTP at this serve URL (an app serving the same
            functions, e.g. with :func:`mainspring.sdk.serve.asgi.serve`) instead of in
            this process; ``signing_key`` signs those calls, ``http`` is the client to use
            for them and for registered apps (default: aiohttp, keeping up to
            ``concurrency`` connections alive; a given client is left open).
        call_timeout: seconds one HTTP call of a function may take before the attempt
            fails as timed out and is retried (default: the reference server's 2 h).
        chain_seconds: how long one call may go on running sequential steps before it
            answers, all of them then recorded at once (default 20 ms; 0 records every step
            on its own). Steps not yet recorded run again after a crash, as always.
        parallel_plans: with a chain budget, a call that finds a plan of ``step.run``
            steps (a wait-mode group, ``asyncio.gather``) runs them side by side and
            answers their outcomes at once, recorded in one unit, instead of one call per
            step (default True; our SDK only, see ``sdk/plans.py``). False keeps the
            protocol's one call per planned step, which spreads a group's steps over an
            app's instances.
        missing_function_grace: how long a run whose function is not registered (a deploy
            dropped it) is held, waiting for it to come back, before it fails: seconds or a
            timedelta (default 24 h). See :mod:`mainspring.engine.held`.
        lease_seconds: on a database several engine processes share (PostgreSQL), how long
            a process holds a job after it last renewed its leases: when a process dies,
            the others take its jobs over this long after (default 30 s). See
            :mod:`mainspring.engine.claims`.
    """

    def __init__(
        self,
        client: Client,
        functions: Iterable[Function[Any]],
        *,
        database: str | os.PathLike[str] = "mainspring.db",
        durability: Durability = "full",
        concurrency: int = 256,
        retry_backoff: Backoff | Sequence[float] | float | None = None,
        step_limit: int = 10_000,
        clock: Clock | None = None,
        app_url: str | None = None,
        signing_key: str | None = None,
        http: httpx.AsyncClient | None = None,
        call_timeout: float | None = None,
        chain_seconds: float = DEFAULT_CHAIN_SECONDS,
        parallel_plans: bool = True,
        missing_function_grace: float | datetime.timedelta = DEFAULT_GRACE,
        lease_seconds: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.functions: dict[str, Function[Any]] = {}
        for function in functions:
            if not isinstance(function, Function):
                raise TypeError(f"Engine: {function!r} is not a mainspring Function")
            for fn in function.with_failure_handler():
                if fn.id in self.functions:
                    raise MainspringError(f"Engine: two functions share the id {fn.id!r}")
                self.functions[fn.id] = fn
        self.clock: Clock = clock or SystemClock()
        self._store: Store = open_store(
            database, durability=durability, clock=self.clock, lease_seconds=lease_seconds
        )
        shared: SharedStore | None = self._store if _is_shared(self._store) else None
        self._index = TriggerIndex(self.functions.values())
        self._queue = JobQueue(self.clock, owns=None if shared is None else shared.holds)
        self._signing_key = signing_key
        #: One client for the calls to every app: the caller's, else ours (closed by stop),
        #: whose pool is as large as the number of jobs that may call at once.
        self._calls = AiohttpCallClient(max_connections=concurrency) if http is None else None
        self._http = http if self._calls is None else self._calls
        self._call_timeout = call_timeout
        self._chain_seconds = chain_seconds
        self._parallel_plans = parallel_plans
        self._transport = RoutingTransport(
            InProcessTransport(
                client,
                self.functions.values(),
                chain_seconds=chain_seconds or None,
                parallel_plans=parallel_plans,
            )
            if app_url is None
            else HttpTransport(
                app_url,
                signing_key=signing_key,
                http=self._http,
                timeout=call_timeout,
                chain_seconds=chain_seconds,
                parallel_plans=parallel_plans,
            )
        )
        self._apps = AppRegistry(self.functions, self._transport.routes, self._connect)
        self._held = HeldRuns(
            store=self._store,
            queue=self._queue,
            clock=self.clock,
            grace=missing_function_grace,
            present=self.functions.__contains__,
            owner=self._apps.owner,
            local_app=client.app_id,
            on_release=lambda run_id: self._executor.forget_run(run_id),
        )
        #: The ``mainspring.runs`` log lines; ``run_log.tracebacks = False`` leaves the
        #: stacks of failures out (``mainspring start`` does).
        self.run_log = RunLog()
        self._executor = Executor(
            store=self._store,
            transport=self._transport,
            queue=self._queue,
            clock=self.clock,
            backoff=backoff_from(retry_backoff),
            step_limit=step_limit,
            on_finished=self._emit_finished,
            emitter=self,
            on_settled=self._settled,
            held=self._held,
            version_of=self.function_version,
            run_log=self.run_log,
        )
        self._admission = Admission(
            store=self._store,
            queue=self._queue,
            clock=self.clock,
            functions=self.functions,
            runs=self._executor,
        )
        self._dispatcher = Dispatcher(
            queue=self._queue,
            admission=self._admission,
            clock=self.clock,
            concurrency=concurrency,
            run_job=self._run_job,
            reload_job=self._stored_job,
        )
        #: Jobs come from claims when other processes share the database.
        self._claims = (
            None
            if shared is None
            else JobClaims(
                store=shared,
                clock=self.clock,
                lease_ms=shared.lease_ms,
                on_claimed=self._claimed,
                on_leading=self._leading,
                on_lost_lead=self._lost_lead,
                on_finished=self._finished_elsewhere,
            )
        )
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._unmatched = UnmatchedEvents(self.clock)
        self._upkeep: asyncio.Task[None] | None = None
        #: Ids of the cron jobs in the store (one per cron trigger).
        self._cron_ids: set[str] = set()
        self._running = False

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the database, pick up unfinished work and start running jobs."""
        if self._running:
            return
        await self._store.open()
        self.client.attach_sender(self)
        # Apps synced before a restart are served at once: their runs in flight go on, and
        # their cron schedules are kept, before the apps sync again.
        for body in await self._store.load_apps():
            try:
                self._apps.install(parse_registration(orjson.loads(body)))
            except (ValueError, MainspringError) as exc:
                logger.warning("a stored app registration could not be loaded: %s", exc)
        self._index = TriggerIndex(self.functions.values())
        self._refresh_flow()
        await self._admission.restore()
        # Runs held for a function this start brings back go on (their jobs are due now
        # in the store, and loaded below).
        await self._held.load()
        await self._held.release(queue_jobs=False)
        jobs = await self._store.load_jobs()
        self._cron_ids = {job.id for job in jobs if job.kind is JobKind.CRON}
        jobs.extend(await self._store.transact(self._sync_crons))
        for job in jobs:
            if job.kind is not JobKind.CRON or job.id in self._cron_ids:
                self._queue.push(job)
        self._running = True
        self._dispatcher.start()
        if self._claims is not None:
            await self._claims.start()
        self._upkeep = asyncio.get_running_loop().create_task(self._purge_expired())

    async def stop(self) -> None:
        """Stop taking jobs, cancel calls in flight (they re-run on the next start)."""
        if not self._running:
            return
        self._running = False
        if self._upkeep is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
        await self._dispatcher.stop()
        if self._claims is not None:
            # The calls in flight were cancelled above: their jobs, and every other job
            # this process held, go back to the other processes now.
            await self._claims.stop(release=True)
        await self._transport.close()
        if self._calls is not None:
            await self._calls.close()
        self.client.attach_sender(None)
        await self._store.close()

    async def _purge_expired(self) -> None:
        """Delete flow-control cells past their time, now and then every hour (a day's
        idempotency keys would otherwise pile up)."""
        while True:
            try:
                await self._store.transact(partial_purge(self.clock.now_ms()))
            except Exception:  # upkeep only: expired cells read as absent anyway
                logger.exception("purging expired flow-control cells failed")
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    def _sync_crons(self, tx: Tx) -> list[Job]:
        """Keep one job per cron trigger: add new schedules, drop removed ones.

        ``self._cron_ids`` are the cron jobs in the store; a dropped one still in the
        in-memory queue is discarded when it comes due (see :meth:`_fire_cron`).
        """
        wanted = {
            job.id: job for job in cron.wanted_jobs(self.functions.values(), self.clock.now_ms())
        }
        for job_id in self._cron_ids - wanted.keys():
            tx.delete_job(job_id)
        # An existing job keeps its tick, which may be one missed while stopped.
        added = [job for job_id, job in wanted.items() if job_id not in self._cron_ids]
        self._cron_ids = set(wanted)
        return [job for job in added if tx.enqueue(job)]

    async def _ingest(
        self, batch: Sequence[tuple[Event, bytes]], ids: Sequence[str] | None = None
    ) -> list[str]:
        """Record validated events in one unit, then queue what they started or resumed."""
        now = self.clock.now_ms()
        plan = plan_intake(batch, self._index, now, ids)
        result = await self._store.transact(lambda tx: write_intake(tx, plan, now, self.emit))
        self._apply_intake(result)
        if not result.resumed:  # an event a wait took is not stray (engine/notices.py)
            self._unmatched.check(plan.events, self._index.listens)
        return [event.internal_id for event in plan.events]

    def _apply_intake(self, result: IntakeResult) -> None:
        """After an intake unit commits: cache new runs, drop skipped ones, queue jobs."""
        self._adopt_runs(result.created)
        for run_id in result.skipped:
            self._executor.forget_run(run_id)
            self._admission.run_finished(run_id)
        for job in result.jobs:
            self._queue.push(job)
        for job in result.moved:
            self._queue.replace(job)

    async def invoke(self, function_id: str, data: Mapping[str, Any] | None = None) -> str:
        """Start a function by id, whatever its triggers; returns the event id."""
        self._require_running()
        if function_id not in self.functions:
            raise MainspringError(f"no function {function_id!r} in this engine")
        payload = {**(data or {}), "_inngest": {"fn_id": function_id}}
        event = Event(name=consts.FUNCTION_INVOKED_EVENT, data=payload)
        [event_id] = await self._ingest(validate_events([event], allow_internal=True))
        return event_id

    def apps(self) -> dict[str, list[Function[Any]]]:
        """The apps registered over HTTP and their functions."""
        return self._apps.by_name()

    def app_list(self) -> list[AppInfo]:
        """Every app: the one loaded in process (if it has functions), then those synced
        over HTTP, by name."""
        return self._apps.listing(self.client.app_id)

    def _connect(self, url: str) -> HttpTransport:
        return HttpTransport(
            url,
            signing_key=self._signing_key,
            http=self._http,
            timeout=self._call_timeout,
            chain_seconds=self._chain_seconds,
            parallel_plans=self._parallel_plans,
        )

    async def register_app(self, registration: Registration) -> None:
        """Serve an app's functions over HTTP; a new sync replaces its previous functions.
        The registration is stored, so a restarted engine serves the app straight away."""
        self._require_running()
        name = registration.app_name
        served = [fn.id for fn in registration.functions]
        dropped = self._apps.ids_of(name) - set(served)
        self._apps.install(registration)
        self._index = TriggerIndex(self.functions.values())
        self._refresh_flow()
        body = orjson.dumps(registration.body)
        now = self.clock.now_ms()

        def unit(tx: Tx) -> list[Job]:
            tx.save_app(name, body, at=now)
            # Remembered after a later sync drops them: a held run names its app.
            tx.set_function_apps(name, served, at=now)
            return self._sync_crons(tx)

        for job in await self._store.transact(unit):
            self._queue.push(job)
        await self._held.report_dropped(name, dropped)
        # Runs held for a function this sync brings back go on.
        await self._held.release()

    async def remove_app(self, url: str) -> list[str]:
        """Stop serving the apps last synced from ``url``; their names. Their runs in
        flight are held at their next call (their function is gone) until the app syncs
        again or the grace period ends (see :mod:`mainspring.engine.held`)."""
        self._require_running()
        served = {name: self._apps.ids_of(name) for name in self._apps.by_name()}
        names = self._apps.remove(url)
        for name in names:
            await self._held.report_dropped(name, served.get(name, set()))
        if names:
            self._index = TriggerIndex(self.functions.values())
            self._refresh_flow()

            def unit(tx: Tx) -> list[Job]:
                for name in names:
                    tx.delete_app(name)
                return self._sync_crons(tx)

            for job in await self._store.transact(unit):
                self._queue.push(job)
        return names

    async def _fire_cron(self, job: Job) -> None:
        function = self.functions.get(str((job.data or {}).get("function_id")))
        if function is None or job.id not in self._cron_ids:
            # Its function or schedule is gone: the sync already deleted the row.
            await self._store.transact(lambda tx: tx.delete_job(job.id))
            return
        now = self.clock.now_ms()
        plan, following = cron.fire(job, function, self._index, now)

        def unit(tx: Tx) -> IntakeResult:
            result = write_intake(tx, plan, now, self.emit)
            tx.repurpose_job(job.id, following)
            return result

        result = await self._store.transact(unit)
        self._apply_intake(result)
        self._queue.push(following)

    async def _run_job(self, job: Job) -> Job | None:
        if job.kind is JobKind.CRON:
            await self._fire_cron(job)
            return None
        return await self._executor.run_job(job)

    # -- events ----------------------------------------------------------------------

    async def send(
        self, events: Event | Sequence[Event], *, id_seed: str | None = None
    ) -> list[str]:
        """Record events and start the functions they trigger; returns the event ids.

        ``id_seed`` is an ``x-inngest-event-id-seed``: the same seed gives the same ids,
        so a resent batch is recognised and starts nothing twice. Every event is checked
        before any is stored: a bad one raises
        :class:`~mainspring.EventInvalidError` naming it, and nothing is recorded.
        """
        self._require_running()
        batch = validate_events([events] if isinstance(events, Event) else list(events))
        ids = None if id_seed is None else ids_from_seed(id_seed, len(batch))
        return await self._ingest(batch, ids)

    def _adopt_runs(self, created: Sequence[tuple[NewRun, Job]]) -> None:
        """Cache new runs' state so their first job needs no read (jobs are queued by
        the caller once the transaction that created them has committed). On a shared
        database, only runs whose first job this process holds: another may run the rest."""
        for run, job in created:
            if self._queue.owns(job.id):
                self._executor.adopt(ActiveRun.new(run))

    def _refresh_flow(self) -> None:
        """Look again at the functions' flow control (after a sync), and on a shared
        database tell the store which functions only the flow leader runs."""
        self._admission.refresh()
        if _is_shared(self._store):
            self._store.set_limited(self._admission.limited_functions())

    async def _leading(self) -> None:
        """This process became the flow leader: count the run-level slots of the runs of
        limited functions that started elsewhere (as after a restart)."""
        await self._admission.restore()

    def _finished_elsewhere(self, run_ids: list[str] | None) -> None:
        """Runs finished (maybe by another process): wake whoever waits for them here
        (None: any may have, every waiter looks again)."""
        for run_id in list(self._waiters) if run_ids is None else run_ids:
            for waiter in self._waiters.pop(run_id, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def _lost_lead(self) -> None:
        """This process is no longer the flow leader: the jobs of limited functions it has
        queued but not started go back, for the next leader (engine/claims.py)."""
        store = self._store
        queued = [job.id for job in self._queue.queued()]
        if queued and _is_shared(store):
            await store.transact(lambda tx: tx.release_limited(queued))

    async def _stored_job(self, job: Job) -> Job | None:
        """The job as the store has it now (None: gone)."""
        for stored in await self._store.jobs_for_run(job.run_id):
            if stored.id == job.id:
                return stored
        return None

    def _claimed(self, jobs: Sequence[Job]) -> None:
        """Jobs a claim took (engine/claims.py): queue them."""
        for job in jobs:
            self._queue.push(job)

    def emit(self, tx: Tx, events: Sequence[Event]) -> list[Job]:
        """Record the engine's own events inside a unit: they start functions and resume
        pauses like any event. Returns the jobs to queue once the unit commits."""
        now = self.clock.now_ms()
        plan = plan_intake(validate_events(events, allow_internal=True), self._index, now)
        result = write_intake(tx, plan, now, self.emit)
        self._adopt_runs(result.created)
        for run_id in result.skipped:
            self._executor.forget_run(run_id)
        return [*result.jobs, *result.moved]

    def function(self, function_id: str) -> Function[Any] | None:
        return self.functions.get(function_id)

    def function_version(self, function_id: str) -> str | None:
        """The app version serving a function now (its app's last sync's, or the client's
        for a function loaded in process); None if it has none."""
        return self._apps.version_of(function_id, self.client.app_version)

    def listens(self, event_name: str) -> bool:
        """Whether a function's trigger names this event (exactly or by a wildcard)."""
        return self._index.listens(event_name)

    def _emit_finished(
        self,
        tx: Tx,
        run: ActiveRun,
        status: RunStatus,
        output: bytes | None,
        error: dict[str, Any] | None,
    ) -> list[Job]:
        """Publish the run's finish events in the finishing unit (see
        :mod:`mainspring.engine.finished`); returns the jobs they queue."""
        internal = finished.announcements(
            run.function_id, run.run_id, run.events, status, output, error, self._index.listens
        )
        return self.emit(tx, internal) if internal else []

    def _settled(self, run_id: str) -> None:
        self._admission.run_finished(run_id)
        self._held.forget(run_id)
        for waiter in self._waiters.pop(run_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: it takes no further step. False if it had already finished."""
        self._require_running()
        if await self._store.get_run(run_id) is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return await self._executor.cancel(run_id)

    async def checkpoint(self, run_id: str, payload: Any) -> int:
        """Record the steps a call in flight checkpoints (``POST
        /v1/checkpoint/{run_id}/async``, see :mod:`mainspring.engine.checkpoint`); how
        many were new. Raises :class:`~mainspring.engine.checkpoint.CheckpointRefused`."""
        self._require_running()
        return await self._executor.checkpoints.record(run_id, payload)

    async def cancel_runs(
        self,
        function: Function[Any] | str,
        *,
        started_after: datetime.datetime | int | None = None,
        started_before: datetime.datetime | int | None = None,
        if_exp: str | None = None,
    ) -> list[str]:
        """Cancel every unfinished run of a function created in ``[after, before)``;
        returns the ids of the runs cancelled (times: datetimes, or epoch milliseconds as
        ints). A function a deploy dropped is named by its id: its runs (held, see
        ``docs/deploying.md``) are cancelled all the same. ``if_exp`` (CEL on the
        triggering ``event``, and ``events`` for a batch) keeps only the runs it matches;
        a malformed one raises
        :class:`~mainspring.protocol.expressions.ExpressionError` before any is cancelled."""
        self._require_running()
        expression = None if if_exp is None else compile_expression(if_exp)
        function_id = function.id if isinstance(function, Function) else function
        runs = await self._store.find_runs(
            function_id=function_id,
            created_after=as_epoch_ms(started_after),
            created_before=as_epoch_ms(started_before),
            unfinished=True,
        )
        if function_id not in self.functions and not runs:
            raise MainspringError(
                f"cancel_runs: no function {function_id!r} in this engine, and no unfinished "
                "run of it in that window"
            )
        if expression is not None:
            runs = await run_search.matching(self._store, runs, expression)
        return [run.id for run in runs if await self._executor.cancel(run.id)]

    async def rerun(self, run_id: str, *, from_step: str | None = None) -> str:
        """Start a new run of ``run_id``'s function with the same triggering events;
        returns the new run's id. With ``from_step`` (a step's id as the function wrote it,
        or its hashed id), that step and what came after it run again, and what came before
        it is not run again: its recorded results are copied in (for a step of a parallel
        group, the group's other branches that completed too). See
        :mod:`mainspring.engine.rerun`."""
        self._require_running()
        return await start_rerun(
            store=self._store,
            functions=self.functions,
            clock=self.clock,
            queue=self._queue,
            run_id=run_id,
            from_step=from_step,
        )

    async def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Wait until the run finishes (or ``timeout`` seconds pass); returns the run."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Listening before reading: a read may wait on the database, and the run may
            # finish meanwhile; its news must not fall between the read and the listening.
            waiter: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters.setdefault(run_id, [])
            waiters.append(waiter)
            try:
                run = await self.run(run_id)
            except BaseException:
                self._drop_waiter(run_id, waiter)
                raise
            if run.status.finished:
                self._drop_waiter(run_id, waiter)
                return run
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                self._drop_waiter(run_id, waiter)
                return run
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                self._drop_waiter(run_id, waiter)
                return await self.run(run_id)

    def _drop_waiter(self, run_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(run_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[run_id]
