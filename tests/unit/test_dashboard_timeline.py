"""The run page's timeline: overlapping steps go in lanes of their own; a crowded timeline
caps its lanes and draws neighbouring steps as one bar, losing none."""

from __future__ import annotations

import dataclasses

from mainspring.server.dashboard.timeline import (
    GROUP_WIDTH,
    MAX_BARS,
    MAX_LANES,
    MIN_WIDTH,
    Bar,
    layout,
)
from mainspring.server.graphql.trace import Span, SpanStatus, StepOp


def _span(
    name: str, start: int | None, end: int | None, *, children: tuple[Span, ...] = ()
) -> Span:
    return Span(
        span_id=name,
        run_id="run",
        name=name,
        status=SpanStatus.COMPLETED if end is not None else SpanStatus.RUNNING,
        attempts=0,
        queued_at=start or 0,
        started_at=start,
        ended_at=end,
        output_id=None,
        step_id=name,
        step_op=StepOp.RUN,
        is_root=not name.startswith("s"),
        parent_span_id=None,
        children=children,
    )


def test_parallel_steps_stand_in_lanes_and_sequential_ones_share_one() -> None:
    steps = (_span("s1", 0, 10), _span("s2", 10, 40), _span("s3", 12, 30), _span("s4", 40, 50))
    timeline = layout(_span("root", 0, 50, children=steps), now=100)
    assert [[bar.span.name for bar in lane] for lane in timeline.lanes] == [
        ["s1", "s2", "s4"],
        ["s3"],
    ]
    s3 = timeline.lanes[1][0]
    assert (s3.left, s3.width) == (24.0, 36.0)


def test_instant_parallel_steps_still_get_lanes_of_their_own() -> None:
    steps = (_span("s1", 5, 5), _span("s2", 5, 5))
    timeline = layout(_span("root", 0, 10, children=steps), now=100)
    assert len(timeline.lanes) == 2


def test_an_open_step_reaches_now() -> None:
    timeline = layout(_span("root", 0, None, children=(_span("s1", 0, None),)), now=20)
    [[bar]] = timeline.lanes
    assert bar.open
    assert bar.end == 20


def _names(bars: list[Bar]) -> list[str]:
    return [span.name for bar in bars for span in bar.spans]


def test_a_crowded_lane_draws_neighbouring_steps_as_groups_and_loses_none() -> None:
    steps = [_span(f"s{i}", i, i + 1) for i in range(1000)]
    steps[500] = dataclasses.replace(steps[500], status=SpanStatus.FAILED)
    [lane] = layout(_span("root", 0, 1000, children=tuple(steps)), now=2000).lanes
    assert len(lane) <= 100 / (GROUP_WIDTH - MIN_WIDTH) + 1  # each group starts that far on
    assert _names(lane) == [f"s{i}" for i in range(1000)]  # every step, in order
    assert all(bar.width <= GROUP_WIDTH + MIN_WIDTH for bar in lane)
    [failed] = [bar for bar in lane if bar.status == "failed"]
    assert failed.target.name == "s500"  # a click on the group shows its failed step
    assert failed.count > 1


def test_a_lane_of_few_steps_keeps_each_step_its_own_bar() -> None:
    steps = tuple(_span(f"s{i}", i, i + 1) for i in range(MAX_BARS))
    [lane] = layout(_span("root", 0, MAX_BARS, children=steps), now=100).lanes
    assert [bar.count for bar in lane] == [1] * MAX_BARS


def test_lanes_are_capped_and_the_steps_of_the_others_share_the_last() -> None:
    steps = tuple(_span(f"s{i}", 0, 100 + i) for i in range(30))  # 30 parallel branches
    timeline = layout(_span("root", 0, 130, children=steps), now=200)
    assert len(timeline.lanes) == MAX_LANES
    assert timeline.folded == 30 - MAX_LANES
    assert all(len(lane) == 1 for lane in timeline.lanes)
    assert [bar.count for lane in timeline.lanes for bar in lane][-1] == 30 - MAX_LANES + 1
    assert sorted(_names([b for lane in timeline.lanes for b in lane])) == sorted(
        f"s{i}" for i in range(30)
    )


def test_many_instant_steps_of_one_millisecond_share_a_lane() -> None:
    # Ten sequential steps a millisecond: too many to tell from parallel ones, and drawn
    # as one lane rather than ten.
    steps = tuple(_span(f"s{i}", i // 10, i // 10) for i in range(MAX_BARS + 10))
    timeline = layout(_span("root", 0, 10, children=steps), now=100)
    assert len(timeline.lanes) == 1


def test_a_label_that_would_run_into_the_next_bar_is_left_to_the_tooltip() -> None:
    steps = (_span("s1", 0, 1), _span("s2", 2, 50), _span("s3", 99, 100))
    [lane] = layout(_span("root", 0, 100, children=steps), now=100).lanes
    assert [(bar.labelled, bar.flipped) for bar in lane] == [
        (False, False),  # 2 % before s2
        (True, False),
        (True, True),  # at the right edge: its label ends where it ends
    ]
