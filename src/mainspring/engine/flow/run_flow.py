"""What flow control asks of one run, derived from its function's options and its first
event: the concurrency keys its calls take, its throttle key, its priority, and whether it
must pass start gates.

Nothing here is stored: it is a pure function of the run's stored event and its
function's configuration, computed once per run in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow import priority
from mainspring.engine.flow.gcra import Rate
from mainspring.engine.flow.keys import key_value
from mainspring.sdk.flow import Concurrency, FlowConfig


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A concurrency key and the limit this run's function sets on it."""

    key: str
    limit: int
    #: The key as the user wrote it and its value, for messages.
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class Throttled:
    key: str
    rate: Rate
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class RunFlow:
    #: Taken by every call of the run (step-level limits), released when the call ends.
    slots: tuple[Slot, ...]
    #: Taken by the run's first call, held until the run finishes (run-level limit).
    run_slot: Slot | None
    throttle: Throttled | None
    #: The run's work counts as queued this much earlier.
    priority_ms: int
    #: The run has start gates: a batch or debounce to close, a throttle to pass.
    gated: bool

    @property
    def limited(self) -> bool:
        """Whether the run's calls wait for anything at all."""
        return bool(self.slots) or self.run_slot is not None or self.gated


def _slot(function_id: str, limit: Concurrency, event: Mapping[str, Any]) -> Slot:
    scope = limit.scope or "fn"
    value = key_value(limit.key, event)  # once: CEL is the costly part of a run's flow
    if scope != "fn":
        return Slot(f"{scope}:{value}", limit.limit, f"{limit.key} = {value!r}")
    if limit.key is None:
        return Slot(f"fn:{function_id}", limit.limit, "fn scope")
    return Slot(f"fn:{function_id}:{value}", limit.limit, f"{limit.key} = {value!r}")


def _keyed(
    control: str, function_id: str, expression: str | None, event: Mapping[str, Any]
) -> tuple[str, str]:
    """A control's key for this run and its label for messages (the key evaluated once)."""
    if expression is None:
        return f"{control}:{function_id}", "the function"
    value = key_value(expression, event)
    return f"{control}:{function_id}:{value}", f"{expression} = {value!r}"


def holds_back(flow: FlowConfig) -> bool:
    """Whether these options can make a run's calls wait (at its start or for slots)."""
    return bool(
        flow.concurrency
        or flow.run_concurrency is not None
        or flow.throttle is not None
        or flow.batch_events is not None
        or flow.debounce is not None
    )


def _merged(slots: list[Slot]) -> tuple[Slot, ...]:
    """One slot per key: two limits that name the same key keep the lower limit."""
    by_key: dict[str, Slot] = {}
    for slot in slots:
        kept = by_key.get(slot.key)
        if kept is None or slot.limit < kept.limit:
            by_key[slot.key] = slot
    return tuple(by_key.values())


def run_flow(function_id: str, flow: FlowConfig, event: Mapping[str, Any]) -> RunFlow | None:
    """The run's flow, or None when its function sets nothing that holds runs back."""
    if not holds_back(flow):
        return None
    run_slot = None
    if flow.run_concurrency is not None:
        limit = flow.run_concurrency
        key, label = _keyed("run", function_id, limit.key, event)
        run_slot = Slot(key, limit.limit, label)
    throttled = None
    if flow.throttle is not None:
        throttle = flow.throttle
        key, label = _keyed("throttle", function_id, throttle.key, event)
        rate = Rate.throttle(throttle.limit, throttle.period_ms(), throttle.burst or 1)
        throttled = Throttled(key, rate, label)
    return RunFlow(
        slots=_merged([_slot(function_id, limit, event) for limit in flow.concurrency]),
        run_slot=run_slot,
        throttle=throttled,
        priority_ms=priority.offset_ms(flow.priority, event),
        gated=throttled is not None or flow.batch_events is not None or flow.debounce is not None,
    )
