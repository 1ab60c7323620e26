"""The pure parts of the engine's flow control: GCRA, keys, priority, the per-run flow and
the fair slot queues."""

from __future__ import annotations

import pytest

import mainspring as inngest
from mainspring.engine.flow import priority
from mainspring.engine.flow.concurrency import Slots, Ticket
from mainspring.engine.flow.gcra import Rate, decide
from mainspring.engine.flow.keys import key_value
from mainspring.engine.flow.run_flow import Slot, run_flow
from mainspring.engine.records import Job, JobKind


def _admit_all(rate: Rate, times: list[int]) -> list[bool]:
    tat: int | None = None
    out = []
    for now in times:
        decision = decide(rate, tat, now)
        if decision.allowed:
            tat = decision.tat
        out.append(decision.allowed)
    return out


def test_a_throttle_of_one_per_period_lets_one_through_per_period() -> None:
    rate = Rate.throttle(limit=1, period_ms=10_000, burst=1)
    assert _admit_all(rate, [0, 1, 9_999, 10_000, 10_001, 20_000]) == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]


def test_a_denied_run_learns_when_it_may_go() -> None:
    rate = Rate.throttle(limit=2, period_ms=10_000, burst=1)
    first = decide(rate, None, 0)
    second = decide(rate, first.tat, 0)
    assert first.allowed
    assert not second.allowed
    assert second.retry_at == 5_000
    assert decide(rate, first.tat, second.retry_at).allowed


def test_a_burst_lets_that_many_go_at_once() -> None:
    rate = Rate.throttle(limit=1, period_ms=60_000, burst=3)
    assert _admit_all(rate, [0, 0, 0, 0, 60_000]) == [True, True, True, False, True]


def test_a_rate_limit_bursts_a_tenth_of_its_limit() -> None:
    assert Rate.rate_limit(10, 60_000).capacity == 2
    assert Rate.rate_limit(1, 60_000).capacity == 1
    assert _admit_all(Rate.rate_limit(10, 60_000), [0, 0, 0, 6_000]) == [True, True, False, True]


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        (None, {}, ""),
        ("event.data.user", {"user": "u-1"}, "u-1"),
        ("event.data.n", {"n": 42}, "42"),
        ("event.data.flag", {"flag": True}, "true"),
        ("event.data.missing", {}, ""),
        ("event.data.a + '-' + event.data.b", {"a": "x", "b": "y"}, "x-y"),
    ],
)
def test_key_values(expression: str | None, data: dict[str, object], expected: str) -> None:
    assert key_value(expression, {"data": data}) == expected


@pytest.mark.parametrize(
    ("expression", "boost", "expected_ms"),
    [
        ("event.data.boost", 30, 30_000),
        ("event.data.boost", -99_999, -43_200_000),
        ("1 + 1", 0, 2_000),
    ],
)
def test_priority_offsets_are_clamped_to_twelve_hours(
    expression: str, boost: int, expected_ms: int
) -> None:
    offset = priority.offset_ms(inngest.Priority(run=expression), {"data": {"boost": boost}})
    assert offset == expected_ms


def test_priority_that_is_not_a_number_counts_as_zero() -> None:
    assert priority.offset_ms(inngest.Priority(run="event.data.x"), {"data": {"x": "a"}}) == 0


def test_run_flow_keys_by_scope() -> None:
    flow = inngest.Client(app_id="a").create_function(
        fn_id="f",
        trigger=inngest.TriggerEvent(event="e"),
        concurrency=[
            inngest.Concurrency(limit=5),
            inngest.Concurrency(limit=2, key="event.data.team", scope="account"),
            inngest.RunConcurrency(limit=1, key="event.data.user"),
        ],
    )(lambda ctx: None)
    found = run_flow("a-f", flow.config.flow, {"data": {"team": "t", "user": "u"}})
    assert found is not None
    assert [(s.key, s.limit) for s in found.slots] == [("fn:a-f", 5), ("account:t", 2)]
    assert found.run_slot is not None
    assert (found.run_slot.key, found.run_slot.limit) == ("run:a-f:u", 1)
    assert not found.gated


def _ticket(run_id: str, *slots: Slot, order: int = 0) -> Ticket:
    return Ticket(
        Job(id=f"{run_id}-job", run_id=run_id, kind=JobKind.START, run_at=0), slots, order
    )


def test_a_freed_slot_goes_to_the_head_of_its_key() -> None:
    slots = Slots()
    a = Slot("k", 1, "k")
    first, second, third = _ticket("r1", a), _ticket("r2", a), _ticket("r3", a)
    assert slots.acquire(first, 0)
    assert not slots.acquire(second, 0)
    assert not slots.acquire(third, 0)
    assert slots.ahead_of(third) == 1
    assert slots.release([a], 1) == [second]
    assert slots.release([a], 2) == [third]
    assert slots.release([a], 3) == []


def test_higher_priority_waits_ahead() -> None:
    slots = Slots()
    a = Slot("k", 1, "k")
    assert slots.acquire(_ticket("r1", a), 0)
    low, high = _ticket("r2", a, order=100), _ticket("r3", a, order=-500)
    assert not slots.acquire(low, 0)
    assert not slots.acquire(high, 0)
    assert slots.release([a], 1) == [high]


def test_a_ticket_needs_all_its_slots_and_moves_on_to_the_key_that_blocks_it() -> None:
    slots = Slots()
    a, b = Slot("a", 1, "a"), Slot("b", 1, "b")
    assert slots.acquire(_ticket("r1", a), 0)
    assert slots.acquire(_ticket("r2", b), 0)
    both = _ticket("r3", a, b)
    assert not slots.acquire(both, 0)
    assert both.blocked_on == "a"
    assert slots.release([a], 1) == []  # free on "a", but "b" is full: it waits there
    assert both.blocked_on == "b"
    assert slots.in_use("a") == 0
    assert slots.release([b], 2) == [both]
    assert (slots.in_use("a"), slots.in_use("b")) == (1, 1)


def test_keys_do_not_wait_for_each_other() -> None:
    slots = Slots()
    hot, cold = Slot("hot", 1, "hot"), Slot("cold", 1, "cold")
    assert slots.acquire(_ticket("r0", hot), 0)
    for n in range(1, 1000):
        assert not slots.acquire(_ticket(f"r{n}", hot), 0)
    assert slots.acquire(_ticket("c", cold), 0)


def test_a_forgotten_ticket_is_never_granted() -> None:
    slots = Slots()
    a = Slot("k", 1, "k")
    assert slots.acquire(_ticket("r1", a), 0)
    gone, kept = _ticket("r2", a), _ticket("r3", a)
    assert not slots.acquire(gone, 0)
    assert not slots.acquire(kept, 0)
    slots.forget(gone)
    assert slots.release([a], 1) == [kept]


@pytest.mark.parametrize(
    "data",
    [
        {"user": "u-1"},
        {"user": 7},
        {"user": 7.5},
        {"user": True},
        {"user": None},
        {"user": [1, "a"]},
        {"user": {"id": 1}},
        {},
        {"other": 1},
    ],
)
def test_a_plain_field_path_reads_what_cel_would(data: dict[str, object]) -> None:
    """``event.data.user`` is read without CEL; ``(event.data.user)`` goes through it."""
    event = {"name": "e", "data": data}
    assert key_value("event.data.user", event) == key_value("(event.data.user)", event)
    assert key_value("event.name", event) == key_value("(event.name)", event) == "e"
