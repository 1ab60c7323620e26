"""``mainspring run ID``: a run's status, its error with the traceback, and a timeline of
its steps drawn from the GraphQL trace (``run(runID:) { trace }``, see
``server/graphql/trace.py``).

Steps that ran at the same time (the members of a parallel group) are put in separate
*lanes*, numbered, and their bars stand side by side on one time axis; a retried step lists
its attempts under it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mainspring.cli.render import (
    STATUS_STYLES,
    between,
    field,
    instant,
    seconds,
    short_json,
    status_text,
    when,
)

_SPAN = """
fragment Span on RunTraceSpan {
  spanID name status attempts queuedAt startedAt endedAt outputID stepID stepOp copiedFromRunID
}"""

#: The run and its trace, three levels deep (run, steps, attempts).
RUN_QUERY = (
    """
query Run($runID: String!) {
  run(runID: $runID) {
    id status functionID startedAt endedAt
    trace { ...Span childrenSpans { ...Span childrenSpans { ...Span } } }
  }
}"""
    + _SPAN
)

OUTPUT_QUERY = """
query Output($outputID: String!) {
  runTraceSpanOutputByID(outputID: $outputID) { data error { name message stack } }
}"""

#: Characters of the bar column.
BAR_WIDTH = 40
#: Seconds by which a step may seem to start before the one before it in its lane ended
#: (times are recorded to the millisecond, by different calls).
LANE_SLACK = datetime.timedelta(milliseconds=5)
#: Failed spans whose errors are fetched (one request each).
MAX_ERRORS = 20


def failed_spans(steps: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(label, outputID)`` of the spans whose error is worth showing: failed attempts,
    or failed steps that have no attempts listed."""
    found: list[tuple[str, str]] = []
    for step in steps:
        name = str(step.get("name") or step.get("stepID") or "?")
        children = step.get("childrenSpans") or []
        for span in children or [step]:
            if span.get("status") == "FAILED" and span.get("outputID"):
                label = f"{name} › {span.get('name')}" if children else name
                found.append((label, str(span["outputID"])))
    return found[-MAX_ERRORS:]


def lanes(steps: Sequence[Mapping[str, Any]], now: datetime.datetime) -> dict[str, int]:
    """Lane (1, 2, ...) of each step span id: steps whose times overlap get different
    lanes, each step the lowest lane free when it starts."""
    timed = []
    for step in steps:
        start = instant(field(step, "startedAt", "queuedAt"))
        if start is not None:
            end = instant(step.get("endedAt")) or now
            timed.append((start, end, str(step.get("spanID"))))
    free_at: list[datetime.datetime] = []
    assigned: dict[str, int] = {}
    for start, end, span_id in sorted(timed):
        for lane, busy_until in enumerate(free_at):
            if busy_until <= start + LANE_SLACK:
                free_at[lane] = end
                assigned[span_id] = lane + 1
                break
        else:
            free_at.append(end)
            assigned[span_id] = len(free_at)
    return assigned


def _bar(
    span: Mapping[str, Any], origin: datetime.datetime, total: float, now: datetime.datetime
) -> Text:
    start = instant(field(span, "startedAt", "queuedAt"))
    if span.get("copiedFromRunID"):
        # A rerun reused it: it ran in that run, before this one started (Took is its time).
        return Text(f"reused from {span['copiedFromRunID']}", style="dim")
    if start is None or total <= 0:
        return Text("")
    end = instant(span.get("endedAt"))
    first = min(BAR_WIDTH - 1, int((start - origin).total_seconds() / total * BAR_WIDTH))
    last_at = end or now
    last = int((last_at - origin).total_seconds() / total * BAR_WIDTH)
    last = max(first + 1, min(BAR_WIDTH, last))
    style = STATUS_STYLES.get(str(span.get("status", "")).lower(), "")
    body = "━" * (last - first - (0 if end else 1)) + ("" if end else "▸")
    return Text(" " * first) + Text(body, style=style)


def timeline(trace: Mapping[str, Any], now: datetime.datetime) -> Table:
    steps: list[Mapping[str, Any]] = list(trace.get("childrenSpans") or [])
    origin = instant(field(trace, "startedAt", "queuedAt")) or now
    ends = [instant(s.get("endedAt")) for s in steps] + [instant(trace.get("endedAt"))]
    horizon = max([e for e in ends if e is not None] + [origin])
    if any(s.get("endedAt") is None for s in steps) or trace.get("endedAt") is None:
        horizon = max(horizon, now)
    total = (horizon - origin).total_seconds()
    lane_of = lanes(steps, now)
    table = Table(header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    for column in ("Lane", "Step", "Kind", "Status", "Attempts", "Took"):
        table.add_column(column, no_wrap=True)
    table.add_column(f"0 … {seconds(total)}", no_wrap=True, min_width=BAR_WIDTH)
    ordered = sorted(
        steps,
        key=lambda s: (
            instant(field(s, "startedAt", "queuedAt")) or now,
            lane_of.get(str(s.get("spanID")), 0),
        ),
    )
    for step in ordered:
        lane = lane_of.get(str(step.get("spanID")))
        table.add_row(
            "-" if lane is None else str(lane),
            Text(str(step.get("name") or step.get("stepID") or "?"), style="bold"),
            str(step.get("stepOp") or "").lower().replace("_", " ") or "-",
            status_text(step.get("status")),
            str(step.get("attempts") or "") if step.get("childrenSpans") else "",
            seconds(between(field(step, "startedAt", "queuedAt"), step.get("endedAt"))),
            _bar(step, origin, total, now),
        )
        for attempt in step.get("childrenSpans") or []:
            table.add_row(
                "",
                Text(f"  ↳ {attempt.get('name')}", style="dim"),
                "",
                status_text(attempt.get("status")),
                "",
                seconds(between(attempt.get("startedAt"), attempt.get("endedAt"))),
                _bar(attempt, origin, total, now),
            )
    if not steps:
        table.add_row("", Text("(no steps)", style="dim"), "", "", "", "", "")
    return table


def error_text(error: Any) -> Text:
    """``Name: message`` and the traceback, dimmed."""
    if not isinstance(error, Mapping):
        return Text(short_json(error, 500), style="red")
    head = ": ".join(str(part) for part in (error.get("name"), error.get("message")) if part)
    text = Text(head or "error", style="bold red")
    stack = error.get("stack")
    if isinstance(stack, str) and stack.strip():
        text.append("\n" + stack.rstrip(), style="dim")
    return text


def render_run(
    out: Console,
    run: Mapping[str, Any],
    trace: Mapping[str, Any] | None,
    errors: Sequence[tuple[str, Any]],
) -> None:
    """The run's summary, its result or error, its timeline and its steps' errors."""
    now = datetime.datetime.now(datetime.UTC)
    started = field(run, "run_started_at", "started_at")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("Function", str(run.get("function_id") or "-"))
    facts.add_row("Status", status_text(run.get("status")))
    facts.add_row("Event", str(run.get("event_id") or "-"))
    facts.add_row("Started", when(started))
    facts.add_row("Ended", when(run.get("ended_at")))
    facts.add_row("Took", seconds(between(started, run.get("ended_at"))))
    if run.get("app_version"):
        facts.add_row("App version", str(run["app_version"]))
    origin = run.get("rerun_of")
    if isinstance(origin, Mapping):
        text = origin.get("text") or f"rerun of {origin.get('run_id')}"
        facts.add_row("Origin", str(text))
    if run.get("waiting_for"):
        facts.add_row("Waiting for", short_json(run["waiting_for"], 120))
    parts: list[Any] = [facts]
    if run.get("error") is not None:
        parts += [Text("\nError", style="bold"), error_text(run["error"])]
    elif str(run.get("status", "")).lower() == "completed":
        parts += [Text("\nOutput", style="bold"), Text(short_json(run.get("output"), 2000))]
    title = f"Run {field(run, 'run_id', 'id')}"
    out.print(Panel(Group(*parts), title=title, title_align="left", expand=False))
    if trace is not None:
        out.print(Text("Timeline", style="bold"))
        out.print(timeline(trace, now))
    shown = [run.get("error")]
    for label, error in errors:
        if error in shown:  # the run's error, or a step's shown already
            out.print(Text(f"✗ {label}: the error above", style="red"))
            continue
        shown.append(error)
        out.print(Text(f"\n✗ {label}", style="red"))
        out.print(error_text(error))
