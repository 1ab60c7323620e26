"""Concurrency slots: how many calls (or runs) hold each key, and who waits for one.

A *ticket* asks for every slot it needs at once (a function may set two step-level
limits, and a run's first call may need its run-level slot too); it gets all of them or
waits in the queue of the first key that is full. Each key keeps its own queue, ordered by
priority and then by arrival, so a backlog on one key never delays another key's work.
When a slot frees, it goes straight to the head of that key's queue (if the head can take
all its slots; else the head moves on to wait for the key that blocks it), so nothing that
comes later can overtake a waiter.

This is pure bookkeeping, without I/O: the slots of calls in flight are leases held by
this process, which die with it, and the waiting tickets are the store's queued jobs,
reloaded on start.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterable

from mainspring.engine.flow.run_flow import Slot
from mainspring.engine.records import Job


@dataclasses.dataclass(slots=True)
class Ticket:
    job: Job
    slots: tuple[Slot, ...]
    #: Priority first, then arrival: the run's creation time less its priority offset.
    order: int
    #: Which of ``slots`` (if any) stays held after the call: the run-level slot.
    run_slot: Slot | None = None
    seq: int = 0
    #: The key this ticket waits for, while it waits.
    blocked_on: str | None = None
    since: int = 0


@dataclasses.dataclass(slots=True)
class _Key:
    used: int = 0
    waiting: list[tuple[int, str, int, Ticket]] = dataclasses.field(default_factory=list)


class Slots:
    """Slots per key and fair queues of tickets waiting for them."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._seq = itertools.count()

    def _key(self, key: str) -> _Key:
        found = self._keys.get(key)
        if found is None:
            found = self._keys[key] = _Key()
        return found

    def in_use(self, key: str) -> int:
        found = self._keys.get(key)
        return 0 if found is None else found.used

    def waiting(self, key: str) -> int:
        found = self._keys.get(key)
        return 0 if found is None else len(found.waiting)

    def ahead_of(self, ticket: Ticket) -> int:
        """How many tickets wait before this one in its key's queue."""
        if ticket.blocked_on is None:
            return 0
        found = self._keys.get(ticket.blocked_on)
        if found is None:
            return 0
        mine = (ticket.order, ticket.job.run_id, ticket.seq)
        return sum(1 for entry in found.waiting if entry[:3] < mine)

    def anyone_before(self, slots: Iterable[Slot], ticket: Ticket) -> bool:
        """Whether a ticket that would go before ``ticket`` waits for one of these keys."""
        mine = (ticket.order, ticket.job.run_id)
        for slot in slots:
            found = self._keys.get(slot.key)
            if found is not None and found.waiting and found.waiting[0][:2] < mine:
                return True
        return False

    def _blocking(self, ticket: Ticket) -> str | None:
        for slot in ticket.slots:
            found = self._keys.get(slot.key)
            if found is not None and found.used >= slot.limit:
                return slot.key
        return None

    def _take(self, ticket: Ticket) -> None:
        for slot in ticket.slots:
            self._key(slot.key).used += 1

    def acquire(self, ticket: Ticket, now: int) -> bool:
        """Take every slot of the ticket, or queue it behind the key that is full."""
        for slot in ticket.slots:
            found = self._keys.get(slot.key)
            # Waiters come first: a free slot with a queue is already promised to it.
            if found is not None and (found.used >= slot.limit or found.waiting):
                self._wait(ticket, slot.key, now)
                return False
        self._take(ticket)
        return True

    def hold(self, slot: Slot) -> None:
        """Count a slot held by a run found started when the engine starts."""
        self._key(slot.key).used += 1

    def _wait(self, ticket: Ticket, key: str, now: int) -> None:
        if ticket.blocked_on is None:
            ticket.since = now
        ticket.blocked_on = key
        ticket.seq = next(self._seq)
        # Run ids are monotonic ULIDs: among runs of one millisecond, the older goes first.
        entry = (ticket.order, ticket.job.run_id, ticket.seq, ticket)
        heapq.heappush(self._key(key).waiting, entry)

    def release(self, slots: Iterable[Slot], now: int) -> list[Ticket]:
        """Free these slots; the tickets that now hold all theirs, in grant order."""
        granted: list[Ticket] = []
        for slot in slots:
            found = self._keys.get(slot.key)
            if found is None:
                continue
            found.used = max(0, found.used - 1)
            granted.extend(self._grant(slot.key, found, now))
            if not found.used and not found.waiting:
                del self._keys[slot.key]
        return granted

    def _grant(self, key: str, found: _Key, now: int) -> list[Ticket]:
        granted: list[Ticket] = []
        while found.waiting:
            head = found.waiting[0][3]
            limit = next(s.limit for s in head.slots if s.key == key)
            if found.used >= limit:
                break
            heapq.heappop(found.waiting)
            blocking = self._blocking(head)
            if blocking is None:
                self._take(head)
                head.blocked_on = None
                granted.append(head)
            else:
                # Free here, full elsewhere: wait there, and offer this slot to the next.
                self._wait(head, blocking, now)
        return granted

    def forget(self, ticket: Ticket) -> None:
        """Drop a waiting ticket (its run finished while it waited)."""
        key = ticket.blocked_on
        found = None if key is None else self._keys.get(key)
        if found is None:
            return
        found.waiting = [entry for entry in found.waiting if entry[3] is not ticket]
        heapq.heapify(found.waiting)
        ticket.blocked_on = None
