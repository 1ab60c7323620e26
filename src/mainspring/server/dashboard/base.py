"""What every page of the dashboard shares: formatting filters for the templates, the
security headers, and :class:`PageBase` (rendering, redirects with a one-time notice,
problem pages). The pages themselves: :mod:`.runs_list`, :mod:`.run_page`, :mod:`.pages`.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mainspring.engine.drift import CODE_CHANGED_OP, DROPPED_OP
from mainspring.engine.engine import Engine
from mainspring.engine.executor import FUNCTION_ERROR_OP
from mainspring.engine.records import Run, StepAttempt
from mainspring.protocol.opcodes import Opcode
from mainspring.server.dashboard.security import Guard, Session
from mainspring.server.sync_status import SyncStatus

#: Runs per page of the runs list.
PAGE_SIZE = 50
#: Recent runs a function's statistics are computed over.
STATS_WINDOW = 200
#: Characters of a JSON value shown before it is cut (a run may hold megabytes).
SHOWN_CHARS = 100_000
#: Name of the one-time notice cookie set by actions.
NOTICE_COOKIE = "mainspring_notice"

SINCE_CHOICES = {
    "15m": datetime.timedelta(minutes=15),
    "1h": datetime.timedelta(hours=1),
    "24h": datetime.timedelta(hours=24),
    "7d": datetime.timedelta(days=7),
}
FAILED_OPS = frozenset({Opcode.STEP_ERROR.value, Opcode.STEP_FAILED.value, FUNCTION_ERROR_OP})


def entry_failed(entry: StepAttempt) -> bool:
    """Whether a history entry is a failure: a failed op, or a result that is an error
    (an invoke whose function failed, an AI step whose provider refused: recorded under
    their own ops)."""
    return entry.op in FAILED_OPS or entry.error is not None


DRIFT_OPS = frozenset({DROPPED_OP, CODE_CHANGED_OP})
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


class PageBase:
    """The engine, the templates and the responses every page uses."""

    def __init__(
        self, engine: Engine, *, kind: str, guard: Guard, sync_status: SyncStatus | None = None
    ) -> None:
        self.engine = engine
        self.kind = kind
        self.guard = guard
        self.env = _environment()
        #: Each app URL's last sync and failed attempt (shared with the poller and the
        #: registration route; the Resync button adds its own).
        self.sync_status = sync_status if sync_status is not None else SyncStatus()

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

    def _function_name(self, function_id: str) -> str:
        function = self.engine.function(function_id)
        return function.name if function is not None else function_id
