"""A run's page: its timeline in lanes, its steps with their attempts, outputs and
tracebacks, its events, and its actions (cancel, rerun, rerun from a step)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.records import StepAttempt
from mainspring.errors import MainspringError
from mainspring.server.dashboard.base import DRIFT_OPS, FAILED_OPS, PageBase, run_duration
from mainspring.server.dashboard.security import Session, form_of
from mainspring.server.dashboard.timeline import layout
from mainspring.server.graphql.trace import build_trace


class RunPage(PageBase):
    """A run's page and the actions on a run."""

    async def run_page(self, request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run = await self.engine.run(run_id)
        except MainspringError:
            return self.problem(request, session, 404, f"No run with id {run_id}.")
        history = await self.engine.history(run.id)
        jobs = await self.engine.jobs(run.id) if not run.status.finished else []
        now = self.engine.clock.now_ms()
        name = self._function_name(run.function_id)
        trace = build_trace(run, name, history, jobs)
        timeline = layout(trace, now)
        steps = _steps(history)
        event = await self.engine.event(run.event_id)
        events = [event] if event is not None else []
        origin_of = getattr(self.engine, "rerun_origin", None)
        origin = await origin_of(run.id) if origin_of is not None else None
        origin_step = None
        if origin is not None and origin.from_step:
            earlier = await self.engine.history(origin.original_id)
            found = (e.user_id for e in earlier if e.step_id == origin.from_step and e.user_id)
            origin_step = next(found, origin.from_step)
        template = "run_live.html" if request.query_params.get("fragment") else "run.html"
        return self.render(
            request,
            session,
            template,
            run=run,
            function_name=name,
            duration=run_duration(run, now),
            timeline=timeline,
            steps=steps,
            drift=[e for e in history if e.op in DRIFT_OPS],
            events=events,
            waiting=None if run.status.finished else await self.engine.waiting_for(run.id),
            origin=origin,
            origin_step=origin_step,
            can_rerun=hasattr(self.engine, "rerun"),
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
        rerun = getattr(self.engine, "rerun", None)
        if rerun is None:
            return self.redirect(f"/runs/{quote(run_id)}", "This engine cannot rerun runs yet.")
        try:
            new_id = await rerun(
                run_id, from_step=from_step if isinstance(from_step, str) else None
            )
        except (MainspringError, ValueError) as exc:
            return self.redirect(f"/runs/{quote(run_id)}", f"Not rerun: {exc}")
        label = f" from step {form.get('from_label') or from_step}" if from_step else ""
        return self.redirect(f"/runs/{quote(str(new_id))}", f"Rerun of {run_id}{label}.")


class StepView:
    """A step of the run page: its entries (failed attempts, then its result)."""

    def __init__(self, step_id: str, entries: Sequence[StepAttempt]) -> None:
        self.step_id = step_id
        self.entries = list(entries)
        last = self.entries[-1]
        self.name = next((e.user_id for e in reversed(self.entries) if e.user_id), "") or (
            "Function error" if last.op == FUNCTION_ERROR_OP else last.op
        )
        self.last = last
        self.failed = last.op in FAILED_OPS
        self.op = last.op
        self.attempts = len(self.entries)


def _steps(history: Sequence[StepAttempt]) -> list[StepView]:
    by_step: dict[str, list[StepAttempt]] = {}
    for entry in history:
        if entry.op not in DRIFT_OPS:
            by_step.setdefault(entry.step_id, []).append(entry)
    return [StepView(step_id, entries) for step_id, entries in by_step.items()]
