"""The dashboard's pages and actions, server-rendered from the engine's read side.

Pages read the engine directly (they run in the server's process and loop): runs and their
histories, events, functions and apps. A run's timeline is the GraphQL trace
(:func:`~mainspring.server.graphql.trace.build_trace`) laid out in lanes
(:mod:`.timeline`). Actions are ``POST`` forms (cancel, rerun, send, invoke, resync),
checked by :class:`~.security.Guard`, each answered by a redirect (post/redirect/get) with
a one-time notice; sending an event answers JSON, so that the page can show the server's
400 message in place.
"""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mainspring.engine.drift import CODE_CHANGED_OP, DROPPED_OP
from mainspring.engine.engine import Engine
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.intake import MAX_DATA_DEPTH, MAX_EVENTS_PER_SEND
from mainspring.engine.records import Run, RunStatus, StepAttempt
from mainspring.errors import EventInvalidError, MainspringError
from mainspring.protocol.json_depth import nests_deeper
from mainspring.protocol.opcodes import Opcode
from mainspring.server import limits
from mainspring.server.dashboard.security import Guard, Session, form_of
from mainspring.server.dashboard.timeline import layout
from mainspring.server.event_input import event_from  # the /e route's own reading
from mainspring.server.graphql.trace import build_trace
from mainspring.server.limits import Refused

#: Runs per page of the runs list.
PAGE_SIZE = 50
#: Recent runs a function's statistics are computed over.
STATS_WINDOW = 200
#: Characters of a JSON value shown before it is cut (a run may hold megabytes).
SHOWN_CHARS = 100_000
#: Name of the one-time notice cookie set by actions.
NOTICE_COOKIE = "mainspring_notice"

_SINCE = {
    "15m": datetime.timedelta(minutes=15),
    "1h": datetime.timedelta(hours=1),
    "24h": datetime.timedelta(hours=24),
    "7d": datetime.timedelta(days=7),
}
_FAILED_OPS = frozenset({Opcode.STEP_ERROR.value, Opcode.STEP_FAILED.value, FUNCTION_ERROR_OP})
_DRIFT_OPS = frozenset({DROPPED_OP, CODE_CHANGED_OP})
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


# -- formatting -----------------------------------------------------------------------


def pretty(value: Any) -> str:
    """``value`` as indented JSON, cut after :data:`SHOWN_CHARS` characters."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        text = repr(value)
    if len(text) > SHOWN_CHARS:
        return text[:SHOWN_CHARS] + f"\n… ({len(text) - SHOWN_CHARS} more characters)"
    return text


def when(ms: int | None) -> str:
    """Epoch milliseconds as local date and time, to the millisecond."""
    if ms is None:
        return "—"
    moment = datetime.datetime.fromtimestamp(ms / 1000)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def took(ms: int | float | None) -> str:
    """A duration for a person: ``850 ms``, ``2.31 s``, ``4 m 10 s``, ``3 h 2 m``."""
    if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
        return "—"
    if ms < 1000:
        return f"{int(ms)} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m"


def run_duration(run: Run, now: int) -> int | None:
    if run.started_at is None:
        return None
    return max(0, (run.ended_at if run.ended_at is not None else now) - run.started_at)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mainspring.server.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pretty=pretty, when=when, took=took)
    env.globals.update(quote=quote)
    return env


# -- the dashboard --------------------------------------------------------------------

Handler = Callable[[Request, Session], Awaitable[Response]]


class Dashboard:
    """The pages of one server."""

    def __init__(self, engine: Engine, *, kind: str, guard: Guard) -> None:
        self.engine = engine
        self.kind = kind
        self.guard = guard
        self.env = _environment()
        #: The last resync the dashboard asked of each app URL: when and what went wrong.
        self.resyncs: dict[str, tuple[int, str | None]] = {}

    # -- responses -------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session,
        template: str,
        status: int = 200,
        **context: Any,
    ) -> Response:
        raw_notice = request.cookies.get(NOTICE_COOKIE)
        notice = unquote(raw_notice) if raw_notice is not None else None
        html = self.env.get_template(template).render(
            request=request,
            csrf=session.csrf,
            kind=self.kind,
            login_required=self.guard.login_required,
            notice=notice,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status, headers=self.headers())
        if raw_notice is not None:
            response.delete_cookie(NOTICE_COOKIE, path="/")
        return response

    def headers(self) -> dict[str, str]:
        return {**_SECURITY_HEADERS, "x-inngest-server-kind": self.kind}

    def redirect(self, url: str, notice: str | None = None) -> Response:
        response = RedirectResponse(url, 303, headers=self.headers())
        if notice is not None:
            response.set_cookie(
                NOTICE_COOKIE, quote(notice)[:1000], path="/", httponly=True, samesite="strict"
            )
        return response

    def problem(self, request: Request, session: Session, status: int, message: str) -> Response:
        return self.render(request, session, "problem.html", status, message=message)

    # -- runs ------------------------------------------------------------------------

    async def runs_page(self, request: Request, session: Session) -> Response:
        query = request.query_params
        function_id = query.get("function") or None
        status_name = query.get("status") or None
        since = query.get("since") or ""
        statuses = None
        if status_name is not None:
            try:
                statuses = [RunStatus(status_name)]
            except ValueError:
                return self.problem(request, session, 400, f"no run status {status_name!r}")
        created_after: datetime.datetime | None = None
        created_before: datetime.datetime | None = None
        try:
            if query.get("from"):
                created_after = datetime.datetime.fromisoformat(query["from"])
            if query.get("until"):
                created_before = datetime.datetime.fromisoformat(query["until"])
        except ValueError as exc:
            return self.problem(request, session, 400, f"a time is not a date and time: {exc}")
        if since in _SINCE:
            created_after = datetime.datetime.now().astimezone() - _SINCE[since]
        older, newer = query.get("older"), query.get("newer")

        async def page(after: str | None, newest_first: bool) -> list[Run]:
            return await self.engine.list_runs(
                function_id=function_id,
                statuses=statuses,
                created_after=created_after,
                created_before=created_before,
                limit=PAGE_SIZE + 1,
                after=after,
                newest_first=newest_first,
            )

        if newer:
            runs = await page(newer, False)
            more_newer = len(runs) > PAGE_SIZE
            runs = list(reversed(runs[:PAGE_SIZE]))
            more_older = True
        else:
            runs = await page(older, True)
            more_older = len(runs) > PAGE_SIZE
            runs = runs[:PAGE_SIZE]
            more_newer = older is not None
        kept = {
            k: v
            for k, v in {
                "function": function_id,
                "status": status_name,
                "since": since,
                "from": query.get("from"),
                "until": query.get("until"),
            }.items()
            if v
        }
        older_url = (
            "/runs?" + urlencode({**kept, "older": runs[-1].id}) if runs and more_older else None
        )
        newer_url = (
            "/runs?" + urlencode({**kept, "newer": runs[0].id}) if runs and more_newer else None
        )
        now = self.engine.clock.now_ms()
        rows = [(run, self._function_name(run.function_id), run_duration(run, now)) for run in runs]
        template = "runs_rows.html" if query.get("fragment") else "runs.html"
        return self.render(
            request,
            session,
            template,
            rows=rows,
            functions=sorted(self.engine.functions),
            statuses=[s.value for s in RunStatus],
            selected={
                "function": function_id or "",
                "status": status_name or "",
                "since": since,
                "from": query.get("from", ""),
                "until": query.get("until", ""),
            },
            live=not older and not newer,
            older_url=older_url,
            newer_url=newer_url,
        )

    def _function_name(self, function_id: str) -> str:
        function = self.engine.function(function_id)
        return function.name if function is not None else function_id

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
            drift=[e for e in history if e.op in _DRIFT_OPS],
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

    # -- events ----------------------------------------------------------------------

    async def events_page(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("name") or None
        older = request.query_params.get("older") or None
        events = await self.engine.events(name=name, limit=PAGE_SIZE + 1, before=older)
        more = len(events) > PAGE_SIZE
        events = events[:PAGE_SIZE]
        runs = await self.engine.runs_for_events([e.internal_id for e in events])
        query = {"name": name} if name else {}
        older_url = (
            "/events?" + urlencode({**query, "older": events[-1].internal_id}) if more else None
        )
        return self.render(
            request,
            session,
            "events.html",
            events=[(e, runs.get(e.internal_id, [])) for e in events],
            name=name or "",
            older_url=older_url,
            names=self._event_names(),
            function_name=self._function_name,
            example=pretty(
                {"name": self._event_names()[0] if self._event_names() else "app/hello", "data": {}}
            ),
        )

    def _event_names(self) -> list[str]:
        names = {
            str(t.to_wire().get("event"))
            for fn in self.engine.functions.values()
            for t in fn.config.triggers
            if t.to_wire().get("event")
        }
        return sorted(names)

    async def event_page(self, request: Request, session: Session) -> Response:
        event = await self.engine.event(request.path_params["event_id"])
        if event is None:
            return self.problem(request, session, 404, "No such event.")
        runs = await self.engine.runs(event.internal_id)
        return self.render(
            request,
            session,
            "event.html",
            event=event,
            runs=runs,
            function_name=self._function_name,
        )

    async def send_event(self, request: Request, session: Session) -> Response:
        """Events from the page's editor, through the checks of ``POST /e/{key}``; JSON
        answers (``{"ids"}``, or ``{"error"}`` with the server's 400 message)."""

        try:
            payload = await limits.read_json(request, limits.EVENTS_BODY_BYTES, depth=None)
            items = payload if isinstance(payload, list) else [payload]
            if len(items) > MAX_EVENTS_PER_SEND:
                raise Refused(400, f"too many events in one send: {len(items)}")
            events = [event_from(item, index) for index, item in enumerate(items)]
            ids = await self.engine.send(events)
        except Refused as exc:
            return JSONResponse({"error": exc.message, "status": exc.status}, exc.status)
        except EventInvalidError as exc:
            return JSONResponse({"error": str(exc), "status": 400}, 400)
        runs = await self.engine.runs_for_events(ids)
        started = [{"id": r.id, "function": r.function_id} for i in ids for r in runs.get(i, [])]
        return JSONResponse({"ids": ids, "runs": started, "status": 200})

    async def resend_event(self, request: Request, session: Session) -> Response:
        from mainspring.sdk.event import Event

        event = await self.engine.event(request.path_params["event_id"])
        if event is None:
            return self.redirect("/events", "No such event.")
        try:
            [new_id] = await self.engine.send(Event(name=event.name, data=event.data))
        except EventInvalidError as exc:
            return self.redirect(f"/events/{quote(event.internal_id)}", f"Not sent: {exc}")
        return self.redirect(f"/events/{quote(new_id)}", f"Sent {event.name} again.")

    # -- functions -------------------------------------------------------------------

    async def functions_page(self, request: Request, session: Session) -> Response:
        now = self.engine.clock.now_ms()
        rows = []
        apps = {fn.id: app.name for app in self.engine.app_list() for fn in app.functions}
        for function_id, function in sorted(self.engine.functions.items()):
            runs = await self.engine.list_runs(function_id=function_id, limit=STATS_WINDOW)
            rows.append((function, apps.get(function_id, ""), _stats(runs, now)))
        return self.render(request, session, "functions.html", rows=rows)

    async def function_page(self, request: Request, session: Session) -> Response:
        function_id = request.path_params["function_id"]
        function = self.engine.function(function_id)
        if function is None:
            return self.problem(request, session, 404, f"No function {function_id}.")
        now = self.engine.clock.now_ms()
        runs = await self.engine.list_runs(function_id=function_id, limit=STATS_WINDOW)
        app = next((a for a in self.engine.app_list() if function in a.functions), None)
        config = function.config.to_wire(app.url if app is not None and app.url else "")
        config.pop("steps", None)
        config["retries"] = function.config.retries
        return self.render(
            request,
            session,
            "function.html",
            function=function,
            app=app,
            config=config,
            stats=_stats(runs, now),
            recent=[(run, run_duration(run, now)) for run in runs[:20]],
        )

    async def invoke_function(self, request: Request, session: Session) -> Response:
        function_id = request.path_params["function_id"]
        form = await form_of(request)
        raw = form.get("data")
        back = f"/functions/{quote(function_id)}"
        try:
            data = orjson.loads(raw if isinstance(raw, str) and raw.strip() else "{}")
        except orjson.JSONDecodeError as exc:
            return self.redirect(back, f"Not invoked: the payload is not JSON: {exc}")
        if not isinstance(data, dict):
            return self.redirect(back, "Not invoked: the payload must be a JSON object.")
        if nests_deeper(data, MAX_DATA_DEPTH):
            return self.redirect(back, f"Not invoked: data nests deeper than {MAX_DATA_DEPTH}.")
        try:
            event_id = await self.engine.invoke(function_id, data)
        except MainspringError as exc:
            return self.redirect(back, f"Not invoked: {exc}")
        runs = await self.engine.runs(event_id)
        if runs:
            return self.redirect(f"/runs/{quote(runs[0].id)}", f"Invoked {function_id}.")
        return self.redirect(back, f"Invoked {function_id} (event {event_id}).")

    # -- apps ------------------------------------------------------------------------

    async def apps_page(self, request: Request, session: Session) -> Response:
        apps = [(app, self.resyncs.get(app.url or "")) for app in self.engine.app_list()]
        return self.render(request, session, "apps.html", apps=apps)

    async def resync_app(self, request: Request, session: Session) -> Response:
        form = await form_of(request)
        url = form.get("url")
        known = {app.url for app in self.engine.app_list() if app.url}
        if not isinstance(url, str) or url not in known:
            return self.redirect("/apps", "No app is synced from that URL.")
        problem = await ask_to_sync(url, dev=self.kind == "dev")
        self.resyncs[url] = (self.engine.clock.now_ms(), problem)
        if problem is None:
            return self.redirect("/apps", f"{url} was asked to sync, and answered.")
        return self.redirect("/apps", f"{url} did not sync: {problem}")


async def ask_to_sync(url: str, *, dev: bool) -> str | None:
    """Ask the app at ``url`` to sync (a ``PUT``, as ``server/poll.py`` does); what went
    wrong, with the fix to try, or None."""
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            answer = await http.put(
                url,
                json={"url": url},
                headers={"x-inngest-server-kind": "dev" if dev else "cloud"},
            )
    except httpx.HTTPError as exc:
        return f"no answer ({exc or type(exc).__name__}): is the app running at that URL?"
    if answer.status_code != 200:
        text = answer.text[:500]
        hint = ""
        if "server_kind_mismatch" in text or "kind" in text.lower():
            hint = " (an app in cloud mode: set INNGEST_DEV=1 or is_production=False)"
        return f"{answer.status_code} {text}{hint}"
    return None


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
        self.failed = last.op in _FAILED_OPS
        self.op = last.op
        self.attempts = len(self.entries)


def _steps(history: Sequence[StepAttempt]) -> list[StepView]:
    by_step: dict[str, list[StepAttempt]] = {}
    for entry in history:
        if entry.op not in _DRIFT_OPS:
            by_step.setdefault(entry.step_id, []).append(entry)
    return [StepView(step_id, entries) for step_id, entries in by_step.items()]


def _stats(runs: Sequence[Run], now: int) -> dict[str, Any]:
    """Success rate and p50/p95 duration of the finished runs among ``runs``."""
    finished = [r for r in runs if r.status in (RunStatus.COMPLETED, RunStatus.FAILED)]
    durations = sorted(d for r in finished if (d := run_duration(r, now)) is not None)
    completed = sum(1 for r in finished if r.status is RunStatus.COMPLETED)
    p50 = p95 = None
    if len(durations) >= 2:
        cuts = statistics.quantiles(durations, n=20, method="inclusive")
        p50, p95 = statistics.median(durations), cuts[18]
    elif durations:
        p50 = p95 = durations[0]
    return {
        "window": len(runs),
        "finished": len(finished),
        "success": None if not finished else 100.0 * completed / len(finished),
        "p50": p50,
        "p95": p95,
        "running": sum(1 for r in runs if not r.status.finished),
    }
