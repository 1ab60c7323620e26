"""REST routes for runs in bulk and for what the server serves: ``GET /v1/runs`` (filters
and cursor paging), ``POST /v1/runs/{run_id}/rerun``, ``POST /v1/cancellations`` (the
reference REST API's name), ``GET /v1/functions`` and ``GET /v1/apps``; and
``POST /v1/runs/wait`` (a long poll until runs finish, :mod:`.run_wait`).

Statuses are :class:`~mainspring.engine.records.RunStatus` values (``Queued``,
``Running``, ``Completed``, ``Failed``, ``Cancelled``, ``Skipped``), as every REST answer
gives them; a filter also takes them in any case (``completed``, ``COMPLETED``: the
GraphQL enum's names). Times are RFC 3339 (a time without an offset is UTC) or epoch
milliseconds. Every parameter is checked before any work and a bad one is a 400 naming it.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mainspring.engine.engine import Engine
from mainspring.engine.records import RerunOrigin, Run, RunStatus
from mainspring.engine.rerun import origin_text
from mainspring.errors import MainspringError, RunNotFoundError
from mainspring.protocol.expressions import ExpressionError, compile_expression
from mainspring.server import limits, run_wait
from mainspring.server.limits import Refused
from mainspring.server.sync_status import AppSync, SyncStatus

#: ``POST /v1/runs/{run_id}/rerun`` and ``POST /v1/cancellations``: a few small fields.
ACTION_BODY_BYTES: Final = 64 * 1024
#: The most ``function_id`` (or ``status``) values one listing takes.
MAX_FILTER_VALUES: Final = 100
#: The longest CEL expression a listing or a cancellation takes (characters).
MAX_EXPRESSION_CHARS: Final = 4096
#: Epoch milliseconds up to the end of year 9999.
MAX_EPOCH_MS: Final = 253_402_300_799_999

_STATUSES: Final = {status.value.lower(): status for status in RunStatus}

Reply = Callable[..., Response]
Refuser = Callable[[Request], Response | None]
RunData = Callable[[Run], Awaitable[dict[str, Any]]]


def parse_time(name: str, raw: Any) -> int:
    """Epoch milliseconds from RFC 3339 text or a whole number of epoch milliseconds (a
    number, or digits in a string); a 400 naming ``name`` otherwise."""
    if isinstance(raw, bool):
        raise Refused(400, f"{name}: expected an RFC 3339 time or epoch milliseconds")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 15:
        raw = int(raw)
    if isinstance(raw, int):
        if not 0 <= raw <= MAX_EPOCH_MS:
            raise Refused(400, f"{name}: epoch milliseconds out of range: {raw}")
        return raw
    if not isinstance(raw, str) or len(raw) > 64:
        raise Refused(400, f"{name}: expected an RFC 3339 time or epoch milliseconds")
    try:
        moment = datetime.datetime.fromisoformat(raw)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise Refused(
            400, f"{name}: expected an RFC 3339 time or epoch milliseconds, got {shown!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise Refused(400, f"{name}: out of range: {raw!r}") from None


def parse_status(name: str, raw: str) -> RunStatus:
    status = _STATUSES.get(raw.lower())
    if status is None:
        allowed = ", ".join(s.value for s in RunStatus)
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise Refused(400, f"{name}: expected one of {allowed}, got {shown!r}")
    return status


def _expression(name: str, raw: Any) -> Any:
    if not isinstance(raw, str) or not raw.strip():
        raise Refused(400, f"{name}: expected a CEL expression on the event")
    if len(raw) > MAX_EXPRESSION_CHARS:
        raise Refused(400, f"{name}: longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        return compile_expression(raw)
    except ExpressionError as exc:
        raise Refused(400, f"{name}: {exc}") from None


def _values(request: Request, name: str) -> list[str]:
    values = request.query_params.getlist(name)
    if len(values) > MAX_FILTER_VALUES:
        raise Refused(400, f"{name}: at most {MAX_FILTER_VALUES} values, got {len(values)}")
    for value in values:
        if not value:
            raise Refused(400, f"{name}: an empty value")
    return values


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise Refused(400, "the body must be a JSON object")
    return payload


def function_data(engine: Engine, app: str, fn: Any) -> dict[str, Any]:
    """One function as ``GET /v1/functions`` lists it: ids, app, triggers and a summary of
    its configuration (as registered, protocol §1.3; absent options are left out)."""
    wire = fn.config.to_wire("")
    config = {
        key: wire[key]
        for key in (
            "cancel",
            "concurrency",
            "throttle",
            "rateLimit",
            "debounce",
            "batchEvents",
            "priority",
            "idempotency",
            "singleton",
            "timeouts",
        )
        if wire.get(key) is not None
    }
    config["retries"] = fn.config.max_attempts - 1
    return {
        "id": fn.id,
        "slug": fn.id,
        "name": fn.name,
        "app": app,
        "triggers": wire.get("triggers", []),
        "config": config,
        "app_version": engine.function_version(fn.id),
    }


def routes(
    engine: Engine,
    *,
    reply: Reply,
    refused: Refuser,
    run_data: RunData,
    sync_status: SyncStatus | None = None,
) -> list[Route]:
    """The routes, answering with the app's ``reply``, guarded by its ``refused`` (the
    signing key outside dev mode), runs shown by its ``run_data`` (as ``GET
    /v1/runs/{run_id}``), apps with their syncs as ``sync_status`` knows them."""
    syncs = sync_status if sync_status is not None else SyncStatus()

    async def list_runs(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        query = request.query_params
        limit = limits.limit_param(request)
        cursor = limits.ulid_param(request, "cursor")
        function_ids = _values(request, "function_id")
        statuses = [parse_status("status", raw) for raw in _values(request, "status")]
        after = None if "from" not in query else parse_time("from", query["from"])
        before = None if "until" not in query else parse_time("until", query["until"])
        expression = None if "q" not in query else _expression("q", query["q"])
        page = await engine.search_runs(
            function_ids=function_ids or None,
            statuses=statuses or None,
            created_after=after,
            created_before=before,
            expression=expression,
            limit=limit,
            cursor=cursor,
        )
        return reply({"data": [await run_data(run) for run in page.runs], "cursor": page.cursor})

    async def rerun(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        body = _object(await limits.read_json(request, ACTION_BODY_BYTES, empty={}))
        from_step = body.get("from_step")
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            raise Refused(400, "from_step: expected a step id (a non-empty string)")
        try:
            new_id = await engine.rerun(request.path_params["run_id"], from_step=from_step)
        except RunNotFoundError as exc:
            return reply({"error": str(exc), "status": 404}, 404)
        except MainspringError as exc:
            return reply({"error": str(exc), "status": 400}, 400)
        return reply({"data": {"run_id": new_id}})

    async def cancellations(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        body = _object(await limits.read_json(request, ACTION_BODY_BYTES))
        function_id = body.get("function_id")
        if not isinstance(function_id, str) or not function_id:
            raise Refused(400, "function_id: required, a function id")
        app_id = body.get("app_id")
        if app_id is not None and not isinstance(app_id, str):
            raise Refused(400, "app_id: expected a string")
        if app_id and engine.function(function_id) is None:
            # The reference names a function by its app and its slug within the app.
            qualified = f"{app_id}-{function_id}"
            if engine.function(qualified) is not None:
                function_id = qualified
        window = {}
        for name in ("started_after", "started_before"):
            if body.get(name) is not None:
                window[name] = datetime.datetime.fromtimestamp(
                    parse_time(name, body[name]) / 1000, datetime.UTC
                )
        condition = body.get("if")
        if condition is not None:
            _expression("if", condition)
        try:
            cancelled = await engine.cancel_runs(function_id, if_exp=condition, **window)
        except MainspringError as exc:
            return reply({"error": str(exc), "status": 404}, 404)
        return reply({"data": {"cancelled": cancelled}})

    async def list_functions(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        listed = [
            function_data(engine, app.name, fn) for app in engine.app_list() for fn in app.functions
        ]
        return reply({"data": listed})

    async def list_apps(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        listed = []
        served = set()
        for app in engine.app_list():
            versions = {engine.function_version(fn.id) for fn in app.functions} - {None}
            sync = syncs.of(app.url) if app.url else None
            served.add(app.url)
            listed.append(
                {
                    "name": app.name,
                    "url": app.url,
                    "sdk": app.sdk,
                    "app_version": next(iter(versions)) if len(versions) == 1 else None,
                    "function_count": len(app.functions),
                    "function_ids": [fn.id for fn in app.functions],
                    **(sync or AppSync(app.url or "")).to_json(),
                }
            )
        # URLs that serve no app: a -u URL that never synced, a registration refused.
        for sync in syncs.all():
            if sync.url not in served:
                listed.append(
                    {
                        "name": None,
                        "url": sync.url,
                        "sdk": None,
                        "app_version": None,
                        "function_count": 0,
                        "function_ids": [],
                        **sync.to_json(),
                    }
                )
        return reply({"data": listed})

    return [
        Route("/v1/runs", list_runs, methods=["GET"]),
        *run_wait.routes(engine, reply=reply, refused=refused),
        Route("/v1/runs/{run_id}/rerun", rerun, methods=["POST"]),
        Route("/v1/cancellations", cancellations, methods=["POST"]),
        Route("/v1/functions", list_functions, methods=["GET"]),
        Route("/v1/apps", list_apps, methods=["GET"]),
    ]


def rerun_data(origin: RerunOrigin) -> dict[str, Any]:
    """A run's ``rerun_of``: the run it reruns and the step it was rerun from (null: from
    the start), with how many recorded steps were copied in and the text pages show."""
    return {
        "run_id": origin.original_id,
        "from_step": origin.from_step,
        "copied_steps": origin.copied,
        "text": origin_text(origin),
    }
