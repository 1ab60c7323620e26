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

import statistics
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mainspring.engine.intake import MAX_DATA_DEPTH, MAX_EVENTS_PER_SEND
from mainspring.engine.records import AppInfo, Run, RunStatus
from mainspring.errors import EventInvalidError, MainspringError
from mainspring.protocol.json_depth import nests_deeper
from mainspring.server import limits
from mainspring.server.dashboard.base import (
    PAGE_SIZE,
    STATS_WINDOW,
    pretty,
    run_duration,
)
from mainspring.server.dashboard.run_page import RunPage
from mainspring.server.dashboard.runs_list import RunsList
from mainspring.server.dashboard.security import Session, form_of
from mainspring.server.event_input import event_from  # the /e route's own reading
from mainspring.server.limits import Refused
from mainspring.server.poll import SYNC_TIMEOUT_S, ask_to_sync
from mainspring.server.sync_status import AppSync


class Dashboard(RunsList, RunPage):
    """The pages of one server."""

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
        syncs = self.sync_status
        apps = self.engine.app_list()
        rows: list[tuple[AppInfo | None, str | None, AppSync | None, str | None]] = []
        for app in apps:
            versions = {self.engine.function_version(fn.id) for fn in app.functions} - {None}
            version = next(iter(versions)) if len(versions) == 1 else None
            rows.append((app, app.url, syncs.of(app.url) if app.url else None, version))
        # URLs that serve no app: a -u URL that never synced, a registration refused.
        served = {app.url for app in apps}
        rows += [(None, s.url, s, None) for s in syncs.all() if s.url not in served]
        now = self.engine.clock.now_ms()
        return self.render(request, session, "apps.html", rows=rows, now=now)

    async def resync_app(self, request: Request, session: Session) -> Response:
        form = await form_of(request)
        url = form.get("url")
        known = {app.url for app in self.engine.app_list() if app.url}
        known |= {sync.url for sync in self.sync_status.all() if sync.expected}
        if not isinstance(url, str) or url not in known:
            return self.redirect("/apps", "No app is synced from that URL.")
        async with httpx.AsyncClient(timeout=SYNC_TIMEOUT_S) as http:
            problem = await ask_to_sync(http, url, dev=self.kind == "dev")
        if problem is None:
            self.sync_status.synced(url)
            return self.redirect("/apps", f"{url} was asked to sync, and answered.")
        self.sync_status.failed(url, problem, source="resync")
        return self.redirect("/apps", f"{url} did not sync: {problem}")


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
