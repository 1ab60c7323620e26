"""A run's page: its timeline in lanes, its steps with their attempts, outputs and
tracebacks, its events, and its actions (cancel, rerun, rerun from a step).

A run may have thousands of steps and its live fragment is fetched again on every change,
so the page lists a window of :data:`STEP_WINDOW` steps (the latest, or any other by
``?from=``, or all with ``?steps=all``) and says which, with links to the others; failed
steps outside the window are named with links to theirs. A step's line previews its
output; its attempts and pretty-printed output are fetched when it is opened
(``?fragment=1&step=ID``), except a failed step's, shown open at once. A batch's events
are listed up to :data:`EVENTS_SHOWN` of them (all with ``?events=all``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.records import StepAttempt
from mainspring.errors import MainspringError
from mainspring.server.dashboard.base import DRIFT_OPS, PageBase, entry_failed, run_duration
from mainspring.server.dashboard.security import Session, form_of
from mainspring.server.dashboard.timeline import layout
from mainspring.server.graphql.trace import build_trace

#: Steps listed at once.
STEP_WINDOW = 50
#: Failed steps outside the window named by the note above it (the rest are counted).
FAILED_NAMED = 10
#: Events of a batch listed at once (a batch may hold hundreds).
EVENTS_SHOWN = 50
#: Characters of a step's output shown on its line.
PREVIEW_CHARS = 120


class RunPage(PageBase):
    """A run's page and the actions on a run."""

    async def run_page(self, request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run = await self.engine.run(run_id)
        except MainspringError:
            return self.problem(request, session, 404, f"No run with id {run_id}.")
        history = await self.engine.history(run.id)
        by_step = _by_step(history)
        params = request.query_params
        wanted = params.get("step")
        if wanted is not None:  # one step's attempts, for its line opened on the page
            if wanted not in by_step:
                return self.problem(request, session, 404, f"No step {wanted} in this run.")
            step = StepView(wanted, by_step[wanted], list(by_step).index(wanted))
            return self.render(request, session, "run_step.html", run=run, step=step)
        jobs = await self.engine.jobs(run.id) if not run.status.finished else []
        now = self.engine.clock.now_ms()
        name = self._function_name(run.function_id)
        timeline = layout(build_trace(run, name, history, jobs), now)
        window = StepWindow.of(len(by_step), params)
        ids = list(by_step)
        steps = [StepView(ids[i], by_step[ids[i]], i) for i in range(window.first, window.end)]
        elsewhere = [
            StepView(step_id, by_step[step_id], index)
            for index, step_id in enumerate(ids)
            if entry_failed(by_step[step_id][-1]) and not window.shows(index)
        ]
        shown_events = None if params.get("events") == "all" else EVENTS_SHOWN
        events, events_total = await self.engine.run_events(run.id, limit=shown_events)
        origin = await self.engine.rerun_origin(run.id)
        origin_step = None
        if origin is not None and origin.from_step:
            # The step's name: this run ran it again (then its own history has it), else
            # the original's has it (read only then: it may have thousands of steps).
            earlier = by_step.get(origin.from_step) or await self.engine.history(origin.original_id)
            found = (e.user_id for e in earlier if e.step_id == origin.from_step and e.user_id)
            origin_step = next(found, origin.from_step)
        links = _Links(run.id, params, {step_id: i for i, step_id in enumerate(ids)}, window)
        template = "run_live.html" if params.get("fragment") else "run.html"
        return self.render(
            request,
            session,
            template,
            run=run,
            function_name=name,
            duration=run_duration(run, now),
            timeline=timeline,
            steps=steps,
            window=window,
            steps_window=STEP_WINDOW,
            failed_elsewhere=elsewhere[:FAILED_NAMED],
            failed_elsewhere_count=len(elsewhere),
            links=links,
            drift=[e for e in history if e.op in DRIFT_OPS],
            events=events,
            events_total=events_total,
            oneline=oneline,
            waiting=None if run.status.finished else await self.engine.waiting_for(run.id),
            origin=origin,
            origin_step=origin_step,
        )

    async def cancel_run(self, request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        try:
            cancelled = await self.engine.cancel(run_id)
        except MainspringError as exc:
            return self.redirect(f"/runs/{quote(run_id)}", f"Not cancelled: {exc}")
        notice = "Run cancelled." if cancelled else "The run had already finished."
        return self.redirect(f"/runs/{quote(run_id)}", notice)

    async def rerun_run(self, request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        form = await form_of(request)
        from_step = form.get("from_step")
        try:
            new_id = await self.engine.rerun(
                run_id, from_step=from_step if isinstance(from_step, str) else None
            )
        except (MainspringError, ValueError) as exc:
            return self.redirect(f"/runs/{quote(run_id)}", f"Not rerun: {exc}")
        label = f" from step {form.get('from_label') or from_step}" if from_step else ""
        return self.redirect(f"/runs/{quote(str(new_id))}", f"Rerun of {run_id}{label}.")


class StepView:
    """A step of the run page: its entries (failed attempts, then its result)."""

    def __init__(self, step_id: str, entries: Sequence[StepAttempt], index: int) -> None:
        self.step_id = step_id
        #: Its position among the run's steps (0-based, in the order they were recorded).
        self.index = index
        self.entries = list(entries)
        last = self.entries[-1]
        self.name = next((e.user_id for e in reversed(self.entries) if e.user_id), "") or (
            "Function error" if last.op == FUNCTION_ERROR_OP else last.op
        )
        self.last = last
        self.failed = entry_failed(last)
        self.op = last.op
        self.attempts = len(self.entries)
        #: Changes when the step records more: a live swap keeps an opened step's body
        #: while it is the same.
        self.version = f"{self.attempts}-{last.op}"

    @property
    def preview(self) -> str:
        """Its result on one line (its line is read at a glance; opening it shows the
        attempts and the output in full)."""
        if self.last.error is not None:
            error = self.last.error
            return _cut(f"{error.get('name') or 'Error'}: {error.get('message') or ''}")
        return oneline(self.last.output)


def oneline(value: Any) -> str:
    """``value`` as compact JSON, cut after :data:`PREVIEW_CHARS` characters."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        text = repr(value)
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class StepWindow:
    """The steps the page lists: ``first`` to ``end`` (0-based, end excluded) of ``total``."""

    total: int
    first: int
    end: int
    everything: bool = False

    @classmethod
    def of(cls, total: int, params: Mapping[str, str]) -> StepWindow:
        """``?steps=all``: every step; ``?from=N``: the window from step N (0-based);
        neither: the latest steps (the live page follows the run's progress)."""
        if params.get("steps") == "all":
            return cls(total, 0, total, everything=True)
        try:
            first = int(params["from"]) if "from" in params else max(0, total - STEP_WINDOW)
        except ValueError:
            first = max(0, total - STEP_WINDOW)
        first = min(max(0, first), max(0, total - 1))
        return cls(total, first, min(total, first + STEP_WINDOW))

    @property
    def partial(self) -> bool:
        return self.end - self.first < self.total

    @property
    def latest(self) -> bool:
        return self.end == self.total

    def shows(self, index: int) -> bool:
        return self.first <= index < self.end

    @staticmethod
    def aligned(index: int) -> int:
        """The start of the window that links to the step at ``index`` show it in."""
        return index - index % STEP_WINDOW


class _Links:
    """The page's own links: its query parameters (the step window, the events shown)
    with some changed."""

    def __init__(
        self, run_id: str, params: Mapping[str, str], index: dict[str, int], window: StepWindow
    ) -> None:
        self._base = f"/runs/{quote(run_id)}"
        self._params = {k: params[k] for k in ("from", "steps", "events") if k in params}
        self._index = index
        self._window = window

    def _page(self, **changes: str | None) -> str:
        params = dict(self._params)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return self._base + (f"?{urlencode(params)}" if params else "")

    def steps_from(self, first: int | None) -> str:
        """The window of steps from ``first`` (0-based; None: the latest steps)."""
        return self._page(steps=None, **{"from": None if first is None else str(first)})

    def all_steps(self) -> str:
        return self._page(steps="all", **{"from": None})

    def all_events(self) -> str:
        return self._page(events="all")

    def step(self, step_id: str | None) -> str:
        """Where a step is listed: its anchor on this page when the window shows it, else
        the window that does."""
        anchor = f"#step-{quote(step_id or '')}"
        index = self._index.get(step_id or "")
        if index is None or self._window.shows(index):
            return anchor
        return self.steps_from(StepWindow.aligned(index)) + anchor


def _by_step(history: Sequence[StepAttempt]) -> dict[str, list[StepAttempt]]:
    """The run's entries by step, in the order the steps were recorded (drift notes are
    listed apart)."""
    by_step: dict[str, list[StepAttempt]] = {}
    for entry in history:
        if entry.op not in DRIFT_OPS:
            by_step.setdefault(entry.step_id, []).append(entry)
    return by_step
