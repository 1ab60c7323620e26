"""The web dashboard of ``mainspring dev`` and ``mainspring start``: runs (live), a run's
timeline and actions, events (send, send again), functions, apps.

Server-rendered (Jinja2 templates in ``templates/``), with a little vanilla JavaScript and
CSS in ``static/`` (no framework, nothing fetched from elsewhere: it works offline). Both
ship in the wheel. :func:`routes` gives the routes to mount in the server's app.

Access: see :mod:`.security` (a login with the signing key in ``start`` mode; every action
a CSRF-checked same-origin ``POST``). Live updates: see :mod:`.feed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from mainspring.engine.engine import Engine
from mainspring.server.dashboard.base import Handler
from mainspring.server.dashboard.feed import RunFeed
from mainspring.server.dashboard.pages import Dashboard
from mainspring.server.dashboard.security import Guard, Session, form_of
from mainspring.server.sync_status import SyncStatus

__all__ = ["routes"]


def routes(
    engine: Engine,
    *,
    kind: str,
    signing_keys: Sequence[str] = (),
    sync_status: SyncStatus | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes for ``engine`` (one mount, to go last in the app's routes):
    pages behind a login when ``signing_keys`` are given (``start`` mode), open otherwise
    (``dev``); the Apps page shows (and its Resync notes) the syncs in ``sync_status``."""
    guard = Guard(signing_keys)
    dashboard = Dashboard(engine, kind=kind, guard=guard, sync_status=sync_status)
    feed = RunFeed(engine)

    def page(handler: Handler) -> Handler:
        """A page: a session is needed (issued on the spot in dev mode; in start mode the
        login form is where one gets it)."""

        async def wrapped(request: Request, _: Session | None = None) -> Response:
            session = guard.session(request)
            if session is not None:
                return await handler(request, session)
            if guard.login_required:
                if request.query_params.get("fragment"):
                    return HTMLResponse("login required", 401, headers=dashboard.headers())
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", 303)
            session, cookie = guard.new_session()
            response = await handler(request, session)
            guard.set_cookie(response, request, cookie)
            return response

        return wrapped

    def action(handler: Handler) -> Handler:
        """A POST: a valid session, its CSRF token, and the dashboard's own origin."""

        async def wrapped(request: Request, _: Session | None = None) -> Response:
            session = guard.session(request)
            if session is None:
                return HTMLResponse(
                    "Your session has expired: reload the page (and log in).",
                    401,
                    headers=dashboard.headers(),
                )
            if not guard.same_origin(request):
                return dashboard.problem(
                    request, session, 403, "Refused: the request did not come from this page."
                )
            presented = request.headers.get("x-csrf-token")
            if presented is None:
                presented = (await form_of(request)).get("csrf")
            if not guard.csrf_matches(session, presented):
                return dashboard.problem(
                    request, session, 403, "Refused: the form's token is missing or stale."
                )
            return await handler(request, session)

        return wrapped

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", 303)

    async def login_form(request: Request) -> Response:
        if not guard.login_required:
            return RedirectResponse("/runs", 303)
        return _login(dashboard, request, None)

    async def login(request: Request) -> Response:
        if not guard.login_required:
            return RedirectResponse("/runs", 303)
        if not guard.same_origin(request):
            return _login(dashboard, request, "Refused: the form did not come from this page.", 403)
        form = await form_of(request)
        key = form.get("key")
        if not isinstance(key, str) or not guard.key_accepted(key):
            return _login(dashboard, request, "That is not this server's signing key.", 401)
        target = form.get("next")
        if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
            target = "/runs"
        response = RedirectResponse(target, 303)
        _, cookie = guard.new_session()
        guard.set_cookie(response, request, cookie)
        return response

    async def logout(request: Request, session: Session) -> Response:
        response = RedirectResponse("/login" if guard.login_required else "/runs", 303)
        response.delete_cookie("mainspring_session", path="/")
        return response

    async def stream(request: Request, session: Session) -> Response:
        run_id = request.query_params.get("run") or None
        return StreamingResponse(
            feed.stream(run_id),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    def get(path: str, handler: Handler) -> Route:
        return Route(path, page(handler), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(path, action(handler), methods=["POST"])

    static = StaticFiles(packages=[("mainspring.server.dashboard", "static")])
    pages: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        post("/logout", logout),
        get("/runs", dashboard.runs_page),
        get("/runs/{run_id}", dashboard.run_page),
        post("/runs/{run_id}/cancel", dashboard.cancel_run),
        post("/runs/{run_id}/rerun", dashboard.rerun_run),
        get("/events", dashboard.events_page),
        post("/events/send", dashboard.send_event),
        get("/events/{event_id}", dashboard.event_page),
        post("/events/{event_id}/resend", dashboard.resend_event),
        get("/functions", dashboard.functions_page),
        get("/functions/{function_id}", dashboard.function_page),
        post("/functions/{function_id}/invoke", dashboard.invoke_function),
        get("/apps", dashboard.apps_page),
        post("/apps/resync", dashboard.resync_app),
        get("/dashboard/events/stream", stream),
        Mount("/dashboard/static", app=static, name="dashboard-static"),
    ]
    # One route standing for all pages: they are not part of the API (``/openapi.json``
    # describes every route of the app itself, and none of these).
    return [_Pages(pages, kind=kind)]


class _Pages(BaseRoute):
    """The dashboard's routes as one route of the app: it matches what one of them
    matches (fully, or by path only, so that a wrong method is still a 405 listing the
    allowed ones) and lets its own router serve the request."""

    def __init__(self, routes: list[BaseRoute], *, kind: str) -> None:
        self.router = Router(routes=routes)
        # Every answer of the app says which kind of server it is, the pages' too.
        self._kind_header = (b"x-inngest-server-kind", kind.encode())

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        best = Match.NONE
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {}
            if match is Match.PARTIAL:
                best = Match.PARTIAL
        return best, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.router.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._kind_header]
            await send(message)

        await self.router(scope, receive, marked)


def _login(
    dashboard: Dashboard, request: Request, error: str | None, status: int = 200
) -> Response:
    target = request.query_params.get("next", "/runs")
    html = dashboard.env.get_template("login.html").render(
        error=error, next=target, kind=dashboard.kind
    )
    return HTMLResponse(html, status, headers=dashboard.headers())
