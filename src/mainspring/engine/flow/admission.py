"""Flow control at dispatch time: may this job call its function now?

A call (a run's start, a discovery, a planned step) first passes its run's *start gates*
once: the run's batch or debounce closes and its throttle lets it through, all in one
store unit (:meth:`Admission.admit`). Then it takes its concurrency slots
(:mod:`.concurrency`); a job that cannot is *held* here, off the queue, until a slot
frees, and is then pushed back to the front of the queue holding its slots. Jobs that
call nothing (sleeps, resumptions, cancellations, cron ticks) and runs whose function
sets no limit go straight through.

The engine asks :meth:`Admission.check` (no I/O) for each due job; ``SLOW`` means the
run must be loaded or gated first, which :meth:`Admission.admit` does. Every admitted job
ends with :meth:`Admission.done`, which frees its slots and grants them to waiters; a
finished run releases its run-level slot with :meth:`Admission.run_finished`.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import itertools
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import orjson

from mainspring.engine.clock import Clock
from mainspring.engine.flow import batching, debounce, idempotency, rate_limit, skips, throttle
from mainspring.engine.flow.concurrency import Slots, Ticket
from mainspring.engine.flow.run_flow import RunFlow, Slot, holds_back, run_flow
from mainspring.engine.queue import JobQueue
from mainspring.engine.records import HoldKind, Job, JobKind
from mainspring.engine.run_state import ActiveRun
from mainspring.engine.store.contract import Store, Tx
from mainspring.protocol.durations import format_duration
from mainspring.sdk.function import Function

#: Jobs that call the function, and so take concurrency slots.
CALL_KINDS = frozenset({JobKind.START, JobKind.DISCOVER, JobKind.PLAN})


class Verdict(enum.Enum):
    GO = "go"  # call now (any slots are taken)
    HELD = "held"  # waits here for a slot; the queue must forget it
    SLOW = "slow"  # load or gate the run first: ask :meth:`Admission.admit`
    DUPLICATE = "duplicate"  # a copy of this job is running or granted


class RunCache(Protocol):
    """The executor's cache of active runs."""

    def active(self, run_id: str) -> ActiveRun | None: ...
    def load(self, run_id: str) -> Awaitable[ActiveRun | None]: ...
    def forget_run(self, run_id: str) -> None: ...


class _Gate(enum.Enum):
    PASSED = "passed"
    DELAYED = "delayed"  # the throttle wants it later
    GONE = "gone"  # replaced by a later debounced event, or skipped: drop the job


@dataclasses.dataclass(slots=True)
class _Line:
    """The runs waiting on one throttle key: one is out (due again at its retry time),
    the others wait in order behind it."""

    waiting: list[tuple[int, str, int, Job]] = dataclasses.field(default_factory=list)
    out: str | None = None


class Admission:
    def __init__(
        self,
        *,
        store: Store,
        queue: JobQueue,
        clock: Clock,
        functions: Mapping[str, Function[Any]],
        runs: RunCache,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._functions = functions
        self._runs = runs
        self._slots = Slots()
        #: Slots held by each admitted call job, by job id.
        self._held: dict[str, Ticket] = {}
        #: Jobs granted their slots while they waited, now on the queue again.
        self._granted: set[str] = set()
        #: Run-level slots, by run id: held from a run's first call until it finishes.
        self._run_slots: dict[str, Slot] = {}
        #: Tickets waiting for a slot, by run id and job id (a parallel group's planned
        #: steps may wait side by side).
        self._waiting: dict[str, dict[str, Ticket]] = {}
        self._lines: dict[str, _Line] = {}
        #: The throttle key each job out of its line belongs to, by job id.
        self._out: dict[str, str] = {}
        #: Runs a throttle holds back: (key, limit, since, retry time), by run id.
        self._throttled: dict[str, tuple[str, str, int, int]] = {}
        self._seq = itertools.count()
        self.enabled = False
        self.refresh()

    def refresh(self) -> None:
        """Look again at the functions (after a sync): is any of them limited?"""
        self.enabled = any(holds_back(fn.config.flow) for fn in self._functions.values())

    def limited_functions(self) -> frozenset[str]:
        """The functions with a concurrency limit (step- or run-level)."""
        return frozenset(
            fn.id
            for fn in self._functions.values()
            if fn.config.flow.concurrency or fn.config.flow.run_concurrency
        )

    async def restore(self) -> None:
        """Count the run-level slots of runs that had started before a restart."""
        limited = [fn.id for fn in self._functions.values() if fn.config.flow.run_concurrency]
        for run_id, function_id, events_json in await self._store.started_runs(limited):
            function = self._functions[function_id]
            events = orjson.loads(events_json)
            flow = run_flow(function_id, function.config.flow, events[0] if events else {})
            if flow is not None and flow.run_slot is not None:
                self._slots.hold(flow.run_slot)
                self._run_slots[run_id] = flow.run_slot

    # -- the decision --------------------------------------------------------------

    def _flow(self, run: ActiveRun) -> RunFlow | None:
        cached = run.flow
        if cached is None:
            function = self._functions.get(run.function_id)
            flow = (
                None
                if function is None
                else run_flow(function.id, function.config.flow, run.events[0])
            )
            cached = run.flow = (flow,)
        return cached[0]

    def check(self, job: Job) -> Verdict:
        """The verdict for a due job, without I/O."""
        if job.kind not in CALL_KINDS:
            return Verdict.GO
        if job.id in self._granted:
            self._granted.discard(job.id)
            return Verdict.GO
        if job.id in self._held:
            return Verdict.DUPLICATE
        run = self._runs.active(job.run_id)
        if run is None:
            return Verdict.SLOW
        flow = self._flow(run)
        if flow is None:
            return Verdict.GO
        if flow.gated and run.admitted_at is None:
            return Verdict.SLOW
        return self._take(job, run, flow)

    async def admit(self, job: Job) -> bool:
        """Load and gate the job's run as needed, then take slots: whether to call now
        (False: the job is held here, or dropped because its run will never start)."""
        run = await self._runs.load(job.run_id)
        if run is None or run.status.finished:
            key = self._out.pop(job.id, None)
            if key is not None:
                self._next_in_line(key)  # it was a throttle's next: let the line move
            return True  # the executor drops the job
        flow = self._flow(run)
        if flow is None:
            return True
        if flow.gated and run.admitted_at is None:
            gate = await self._gate(job, run, flow)
            if gate is not _Gate.PASSED:
                return False
        return self._take(job, run, flow) is Verdict.GO

    def _take(self, job: Job, run: ActiveRun, flow: RunFlow) -> Verdict:
        run_slot = flow.run_slot if run.run_id not in self._run_slots else None
        slots = flow.slots if run_slot is None else (*flow.slots, run_slot)
        if not slots:
            return Verdict.GO
        ticket = Ticket(job, slots, run.created_at - flow.priority_ms, run_slot)
        if self._slots.acquire(ticket, self._clock.now_ms()):
            self._hold(ticket)
            return Verdict.GO
        self._waiting.setdefault(run.run_id, {})[job.id] = ticket
        return Verdict.HELD

    def _hold(self, ticket: Ticket) -> None:
        self._held[ticket.job.id] = ticket
        if ticket.run_slot is not None:
            self._run_slots[ticket.job.run_id] = ticket.run_slot

    # -- releasing -----------------------------------------------------------------

    def done(self, job: Job, follow: Job | None = None) -> bool:
        """The job's call is over: free its slots (a run-level slot stays with the run).

        ``follow`` is the run's next job, due now: it keeps the slots instead, unless a run
        ahead of it (by priority, then age) waits for one of them. True if it kept them
        (it then goes without asking again)."""
        ticket = self._held.pop(job.id, None)
        if ticket is None:
            return False
        released = [slot for slot in ticket.slots if slot is not ticket.run_slot]
        if (
            follow is not None
            and follow.kind in CALL_KINDS
            and follow.run_id == job.run_id
            and not self._slots.anyone_before(released, ticket)
        ):
            ticket.job = follow
            self._held[follow.id] = ticket
            self._granted.add(follow.id)
            return True
        if released:
            self._wake(self._slots.release(released, self._clock.now_ms()))
        return False

    def run_finished(self, run_id: str) -> None:
        """The run is over: its run-level slot frees, and nothing of it waits any more."""
        for waiting in self._waiting.pop(run_id, {}).values():
            self._slots.forget(waiting)
        self._throttled.pop(run_id, None)
        slot = self._run_slots.pop(run_id, None)
        if slot is not None:
            self._wake(self._slots.release([slot], self._clock.now_ms()))

    def _wake(self, granted: list[Ticket]) -> None:
        for ticket in granted:
            tickets = self._waiting.get(ticket.job.run_id)
            if tickets is not None:
                tickets.pop(ticket.job.id, None)
                if not tickets:
                    del self._waiting[ticket.job.run_id]
            self._hold(ticket)
            self._granted.add(ticket.job.id)
            self._queue.push_front(ticket.job)

    # -- start gates -----------------------------------------------------------------

    async def _gate(self, job: Job, run: ActiveRun, flow: RunFlow) -> _Gate:
        """Close the run's batch or debounce and pass its throttle, in one unit."""
        function = self._functions.get(run.function_id)
        if function is None:
            return _Gate.PASSED  # the executor fails the run: its function is gone
        throttled = flow.throttle
        order = run.created_at - flow.priority_ms
        if throttled is not None:
            line = self._lines.setdefault(throttled.key, _Line())
            if line.out not in (None, job.id):
                # Another run of this throttle is being let through or waits for its time:
                # take a place in the line behind it (one gate at a time keeps the order).
                heapq.heappush(line.waiting, (order, run.run_id, next(self._seq), job))
                self._note_throttled(run.run_id, flow, None)
                return _Gate.DELAYED
            line.out = job.id
            self._out[job.id] = throttled.key
        config = function.config.flow
        event = run.events[0]
        now = self._clock.now_ms()
        run_id = run.run_id

        def unit(tx: Tx) -> tuple[_Gate, int]:
            if config.debounce is not None:
                key = debounce.hold_key(function.id, config.debounce, event)
                hold = tx.get_hold(HoldKind.DEBOUNCE, key)
                if hold is None or hold.run_id != run_id:
                    return _Gate.GONE, 0  # a later event replaced it (it is skipped)
            if throttled is not None:
                decision = throttle.admit(tx, throttled, run_id, now)
                if not decision.allowed:
                    return _Gate.DELAYED, decision.retry_at
            if config.batch_events is not None:
                batching.close(tx, run_id)
                why = None
                if config.rate_limit is not None:
                    why = rate_limit.check(tx, function.id, config.rate_limit, event, run_id, now)
                if why is None and config.idempotency is not None:
                    why = idempotency.check(tx, function.id, config.idempotency, event, run_id, now)
                if why is not None:
                    skips.skip(tx, run_id, why, now)
                    return _Gate.GONE, 0
            if config.debounce is not None:
                debounce.close(tx, run_id)
            tx.update_run(run_id, admitted_at=now)
            return _Gate.PASSED, 0

        gate, retry_at = await self._store.transact(unit)
        if gate is _Gate.DELAYED:
            # Still out of its line: it comes back when the throttle allows.
            self._queue.push(dataclasses.replace(job, run_at=retry_at))
            self._note_throttled(run_id, flow, retry_at)
            return gate
        if throttled is not None:
            self._next_in_line(throttled.key)
        self._throttled.pop(run_id, None)
        if gate is _Gate.GONE:
            self._runs.forget_run(run_id)
            return gate
        run.admitted_at = now
        if config.batch_events is not None:
            # Its events are final now: the next load reads them all.
            self._runs.forget_run(run_id)
        return gate

    def _next_in_line(self, key: str) -> None:
        line = self._lines.get(key)
        if line is None:
            return
        if line.out is not None:
            self._out.pop(line.out, None)
        line.out = None
        if not line.waiting:
            del self._lines[key]
            return
        job = heapq.heappop(line.waiting)[3]
        line.out = job.id
        self._out[job.id] = key
        self._queue.push(dataclasses.replace(job, run_at=self._clock.now_ms()))

    def _note_throttled(self, run_id: str, flow: RunFlow, retry_at: int | None) -> None:
        throttled = flow.throttle
        assert throttled is not None
        rate = throttled.rate
        limit = f"{rate.limit} per {format_duration(rate.period_ms)}"
        since = self._throttled.get(run_id, ("", "", self._clock.now_ms(), 0))[2]
        self._throttled[run_id] = (throttled.label, limit, since, retry_at or 0)

    # -- what a run waits for ----------------------------------------------------------

    async def waiting_for(self, run_id: str) -> dict[str, Any] | None:
        """What holds the run back, if flow control does: a concurrency slot or a throttle
        (held here), or its batch filling or its debounce (from the store's holds)."""
        found = self._held_back(run_id)
        if found is not None:
            return found
        holds = await self._store.holds_for_run(run_id)
        if not holds:
            return None
        run = await self._store.get_run(run_id)
        function = None if run is None else self._functions.get(run.function_id)
        if run is None or function is None or run.status.finished:
            return None
        jobs = await self._store.jobs_for_run(run_id)
        start = next((job.run_at for job in jobs if job.kind is JobKind.START), None)
        return skips.describe_hold(function.config.flow, holds, start)

    def _held_back(self, run_id: str) -> dict[str, Any] | None:
        """Why the run's next call has not gone yet, if it waits here."""
        tickets = self._waiting.get(run_id)
        ticket = None if not tickets else next(iter(tickets.values()))
        if ticket is not None and ticket.blocked_on is not None:
            slot = next(s for s in ticket.slots if s.key == ticket.blocked_on)
            level = "run" if slot is ticket.run_slot else "step"
            return {
                "waiting_for": "concurrency",
                "limit": slot.limit,
                "level": level,
                "key": slot.label,
                "in_flight": self._slots.in_use(slot.key),
                "ahead": self._slots.ahead_of(ticket),
                "since": ticket.since,
                "message": (
                    f"waiting for a concurrency slot: {level}-level limit {slot.limit} on "
                    f"{slot.label} ({self._slots.in_use(slot.key)} in flight, "
                    f"{self._slots.ahead_of(ticket)} ahead)"
                ),
            }
        throttled = self._throttled.get(run_id)
        if throttled is not None:
            label, limit, since, retry_at = throttled
            return {
                "waiting_for": "throttle",
                "limit": limit,
                "key": label,
                "since": since,
                "until": retry_at or None,
                "message": f"throttled: {limit} on {label}",
            }
        return None
