"""A run's timeline as the run page draws it: its steps (from the GraphQL trace, see
:func:`~mainspring.server.graphql.trace.build_trace`) laid out in lanes, so that steps
whose time ranges overlap (parallel branches) stand side by side, one above the other.

Pure: spans and times in, bars with positions (percentages of the run's time range) out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mainspring.server.graphql.trace import Span, SpanStatus, StepOp

#: The narrowest bar drawn, in percent of the timeline (an instant step stays visible).
MIN_WIDTH = 0.6


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One step on the timeline."""

    span: Span
    start: int
    end: int
    #: Whether the step is still going (its bar reaches "now").
    open: bool
    left: float
    width: float
    #: ``run``, ``sleep``, ``wait``, ``invoke`` or ``note`` (drift, flow control).
    kind: str
    status: str

    @property
    def duration_ms(self) -> int:
        return max(0, self.end - self.start)


@dataclasses.dataclass(frozen=True, slots=True)
class Timeline:
    lanes: list[list[Bar]]
    start: int
    end: int

    @property
    def duration_ms(self) -> int:
        return max(0, self.end - self.start)


_KINDS = {
    StepOp.RUN: "run",
    StepOp.SLEEP: "sleep",
    StepOp.WAIT_FOR_EVENT: "wait",
    StepOp.INVOKE: "invoke",
}


def _range(span: Span, now: int) -> tuple[int, int, bool]:
    start = span.started_at if span.started_at is not None else span.queued_at
    if span.ended_at is not None:
        return start, max(start, span.ended_at), False
    return start, max(start, now), True


def layout(root: Span, now: int) -> Timeline:
    """The root span's children in lanes: each step goes in the first lane whose last
    step ended before it started (greedy interval partitioning, by start time)."""
    steps: Sequence[Span] = root.children
    ranges = [(span, *_range(span, now)) for span in steps]
    run_start = root.started_at if root.started_at is not None else root.queued_at
    starts = [run_start, *(start for _, start, _, _ in ranges)]
    ends = [end for _, _, end, _ in ranges]
    if root.ended_at is not None:
        ends.append(root.ended_at)
    elif root.status is not SpanStatus.QUEUED:
        ends.append(now)
    t0 = min(starts)
    t1 = max([t0 + 1, *ends])
    total = t1 - t0
    lanes: list[list[Bar]] = []
    lane_ends: list[int] = []
    for span, start, end, is_open in sorted(ranges, key=lambda r: (r[1], r[2])):
        left = 100.0 * (start - t0) / total
        width = max(MIN_WIDTH, 100.0 * (end - start) / total)
        left = min(left, 100.0 - MIN_WIDTH)
        width = min(width, 100.0 - left)
        kind = _KINDS.get(span.step_op, "note") if span.step_op is not None else "note"
        bar = Bar(span, start, end, is_open, left, width, kind, span.status.value.lower())
        occupied = max(end, start + 1)  # an instant step still takes its millisecond
        for index, lane_end in enumerate(lane_ends):
            if lane_end <= start:
                lanes[index].append(bar)
                lane_ends[index] = occupied
                break
        else:
            lanes.append([bar])
            lane_ends.append(occupied)
    return Timeline(lanes, t0, t1)
