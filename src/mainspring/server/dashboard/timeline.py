"""A run's timeline as the run page draws it: its steps (from the GraphQL trace, see
:func:`~mainspring.server.graphql.trace.build_trace`) laid out in lanes, so that steps
whose time ranges overlap (parallel branches) stand side by side, one above the other.

A run of thousands of steps stays drawable: at most :data:`MAX_LANES` lanes are drawn (the
steps of further lanes share the last one), and a lane of more than :data:`MAX_BARS` steps
draws neighbouring steps as one bar (a *group*), so a page never carries thousands of bars
nor draws labels on top of one another.

Pure: spans and times in, bars with positions (percentages of the run's time range) out.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

from mainspring.server.graphql.trace import Span, SpanStatus, StepOp

#: The narrowest bar drawn, in percent of the timeline (an instant step stays visible).
MIN_WIDTH = 0.6
#: The most lanes drawn; the steps of further lanes go in the last one, where steps that
#: overlap are merged (a fan-out of 1,000 branches is 1,000 lanes otherwise).
MAX_LANES = 8
#: The most steps a lane draws one by one; past that, neighbouring steps are merged.
MAX_BARS = 40
#: The widest a merged group is drawn, in percent (so a crowded lane has some 40 bars).
GROUP_WIDTH = 3.0
#: The room a bar needs before the next one in its lane for its label to be drawn: in a
#: row of quick steps only the labels that fit are written (each bar keeps its tooltip).
LABEL_ROOM = 6.0


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One step on the timeline, or a group of neighbouring steps (``spans``)."""

    spans: tuple[Span, ...]
    start: int
    end: int
    #: Whether the step is still going (its bar reaches "now").
    open: bool
    left: float
    width: float
    #: ``run``, ``sleep``, ``wait``, ``invoke`` or ``note`` (drift, flow control).
    kind: str
    status: str
    #: Whether its label fits before the next bar of its lane.
    labelled: bool = True
    #: Whether its label ends at its right end (a last bar near the right edge).
    flipped: bool = False

    @property
    def span(self) -> Span:
        return self.spans[0]

    @property
    def count(self) -> int:
        return len(self.spans)

    @property
    def target(self) -> Span:
        """The step a click shows: a group's first failed step, else its first."""
        failed = (s for s in self.spans if s.status is SpanStatus.FAILED)
        return next(failed, self.spans[0])

    @property
    def name(self) -> str:
        if len(self.spans) == 1:
            return self.spans[0].name
        return f"{self.spans[0].name} … {self.spans[-1].name}"

    @property
    def failures(self) -> int:
        return sum(1 for s in self.spans if s.status is SpanStatus.FAILED)

    @property
    def duration_ms(self) -> int:
        return max(0, self.end - self.start)


@dataclasses.dataclass(frozen=True, slots=True)
class Timeline:
    lanes: list[list[Bar]]
    start: int
    end: int
    #: How many lanes of parallel steps were folded into the last lane drawn.
    folded: int = 0
    #: How many steps the timeline stands for (its bars may group them).
    steps: int = 0

    @property
    def duration_ms(self) -> int:
        return max(0, self.end - self.start)

    @property
    def grouped(self) -> bool:
        return any(bar.count > 1 for lane in self.lanes for bar in lane)


_KINDS = {
    StepOp.RUN: "run",
    StepOp.SLEEP: "sleep",
    StepOp.WAIT_FOR_EVENT: "wait",
    StepOp.INVOKE: "invoke",
}


#: A step placed on the timeline: start, end, open, left, width (percent), its span.
_Placed = tuple[int, int, bool, float, float, Span]


def _range(span: Span, now: int) -> tuple[int, int, bool]:
    start = span.started_at if span.started_at is not None else span.queued_at
    if span.ended_at is not None:
        return start, max(start, span.ended_at), False
    return start, max(start, now), True


def _copied_first(root: Span) -> Sequence[Span]:
    """The root's steps, those a rerun reused (``Span.copied_from``) moved: they ran in an
    earlier run, before this one started, and are drawn as they ran there (durations and
    gaps kept) as one block that ends where this run starts, so that the timeline reads in
    execution order while the run's own steps keep their times."""
    copied = [s.ended_at for s in root.children if s.copied_from and s.ended_at is not None]
    start = root.started_at if root.started_at is not None else root.queued_at
    if not copied:
        return root.children
    shift = start - max(copied)
    return [
        dataclasses.replace(
            span,
            queued_at=span.queued_at + shift,
            started_at=None if span.started_at is None else span.started_at + shift,
            ended_at=None if span.ended_at is None else span.ended_at + shift,
        )
        if span.copied_from
        else span
        for span in root.children
    ]


def layout(root: Span, now: int) -> Timeline:
    """The root span's children in lanes: each step goes in the first lane whose last
    step ended before it started (greedy interval partitioning, by start time)."""
    steps: Sequence[Span] = _copied_first(root)
    ranges = sorted(((*_range(span, now), span) for span in steps), key=_order)
    run_start = root.started_at if root.started_at is not None else root.queued_at
    ends = [end for _, end, _, _ in ranges]
    if root.ended_at is not None:
        ends.append(root.ended_at)
    elif root.status is not SpanStatus.QUEUED:
        ends.append(now)
    t0 = min([run_start, *(start for start, _, _, _ in ranges)])
    t1 = max([t0 + 1, *ends])
    scale = 100.0 / (t1 - t0)
    lanes: list[list[_Placed]] = []
    # First fit in O(n log n): the lanes busy until some time, and the free lanes by index
    # (the lowest free lane is the first whose last step ended before this one started).
    busy: list[tuple[int, int]] = []
    free: list[int] = []
    # An instant step takes its millisecond (two of them at once are parallel branches),
    # unless the timeline is crowded: then many sequential steps share each millisecond,
    # and taking it would stack them in lanes as if they were parallel.
    claim = 0 if len(ranges) > MAX_BARS else 1
    last_left = 100.0 - MIN_WIDTH
    for start, end, is_open, span in ranges:
        # Plain comparisons, not min() and max(): this loop runs once per step.
        left = scale * (start - t0)
        if left > last_left:
            left = last_left
        width = scale * (end - start)
        if width < MIN_WIDTH:
            width = MIN_WIDTH
        if width > 100.0 - left:
            width = 100.0 - left
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            index = heapq.heappop(free)
        else:
            index = len(lanes)
            lanes.append([])
        lanes[index].append((start, end, is_open, left, width, span))
        heapq.heappush(busy, (max(end, start + claim), index))
    folded = max(0, len(lanes) - MAX_LANES)
    if folded:
        rest = sorted((placed for lane in lanes[MAX_LANES - 1 :] for placed in lane), key=_order)
        lanes = [*lanes[: MAX_LANES - 1], rest]
    drawn = []
    for index, lane in enumerate(lanes):
        last = folded > 0 and index == len(lanes) - 1
        crowded = len(lane) > MAX_BARS or last
        groups = _merge(lane, overlapping=last) if crowded else [[p] for p in lane]
        drawn.append(_bars(groups))
    return Timeline(drawn, t0, t1, folded, len(ranges))


def _order(placed: tuple[int, int, bool, object] | _Placed) -> tuple[int, int]:
    """Steps by start, then end (the order the lanes are filled in)."""
    return placed[0], placed[1]


def _merge(lane: list[_Placed], *, overlapping: bool) -> list[list[_Placed]]:
    """Neighbouring steps of a crowded lane in groups at most :data:`GROUP_WIDTH` wide (a
    step wider than that stays alone); in the folded lane, steps that overlap in time
    always join (they stand for parallel branches drawn in one lane)."""
    groups: list[list[_Placed]] = []
    group_left = group_right = 0.0
    group_end = 0
    for placed in lane:
        start, end, _, left, width, _ = placed
        right = left + width
        if groups and (
            (right if right > group_right else group_right) - group_left <= GROUP_WIDTH
            or (overlapping and start < group_end)
        ):
            groups[-1].append(placed)
            if right > group_right:
                group_right = right
            if end > group_end:
                group_end = end
        else:
            groups.append([placed])
            group_left, group_right, group_end = left, right, end
    return groups


def _bars(groups: list[list[_Placed]]) -> list[Bar]:
    """A lane's bars, one per group; a label is drawn where it does not run into the
    next bar."""
    lefts = [group[0][3] for group in groups]  # a lane is in start order
    bars = []
    for index, group in enumerate(groups):
        left = lefts[index]
        room = (lefts[index + 1] if index + 1 < len(groups) else 100.0) - left
        labelled = room >= LABEL_ROOM
        spans = tuple(p[5] for p in group)
        if len(group) == 1:
            start, end, is_open, _, width, span = group[0]
            kind = _kind(span)
            status = span.status.value.lower()
        else:
            start = min(p[0] for p in group)
            end = max(p[1] for p in group)
            is_open = any(p[2] for p in group)
            width = max(p[3] + p[4] for p in group) - left
            kinds = {_kind(span) for span in spans}
            kind = kinds.pop() if len(kinds) == 1 else "run"
            failed = any(span.status is SpanStatus.FAILED for span in spans)
            status = "failed" if failed else spans[-1].status.value.lower()
        flipped = False
        if not labelled and index + 1 == len(groups):
            # The last bar, too near the right edge: its label ends where it ends, if that
            # leaves the previous bar's label its room.
            before = lefts[index - 1] if index else 0.0
            flipped = labelled = left + width - before >= 2 * LABEL_ROOM
        bar = Bar(spans, start, end, is_open, left, width, kind, status, labelled, flipped)
        bars.append(bar)
    return bars


def _kind(span: Span) -> str:
    return _KINDS.get(span.step_op, "note") if span.step_op is not None else "note"
