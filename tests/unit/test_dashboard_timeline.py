"""The run page's timeline: overlapping steps go in lanes of their own."""

from __future__ import annotations

from mainspring.server.dashboard.timeline import layout
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
