"""The server's HTTP API on Starlette: events in (``/e``), apps in (``/fn/register``), runs
out (``/v1``), state for large runs (``/v0/runs``) — protocol §1.3-§1.4, §2.4, §8.3, §12 —
and its description (``/openapi.json``).

Every answer is JSON and carries ``X-Inngest-Server-Kind``. Bad input gets a 4xx naming
the problem, before any work where it can be seen early (body caps, list parameters: see
:mod:`.limits`); an unexpected error is a JSON 500 that keeps the connection (see
:mod:`.guard`). Stored values are answered whatever they hold.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mainspring.engine.engine import Engine
from mainspring.engine.intake import MAX_DATA_DEPTH, MAX_EVENTS_PER_SEND
from mainspring.engine.notices import event_note
from mainspring.engine.records import Job, Run, StoredEvent
from mainspring.engine.remote import RegistrationError, parse_registration
from mainspring.engine.runlog import last_error
from mainspring.engine.store.contract import UnitUndoneError
from mainspring.errors import EventInvalidError, MainspringError
from mainspring.protocol import signing
from mainspring.protocol.json_depth import nests_deeper
from mainspring.server import checkpoint_api, dashboard, limits
from mainspring.server import graphql as gql
from mainspring.server.dev_info import dev_server_info
from mainspring.server.event_input import event_from
from mainspring.server.guard import Contained, exception_handlers, json_response
from mainspring.server.keys import EventKeys, check_signing_keys
from mainspring.server.kind_hints import KindMismatches, kind_fix
from mainspring.server.limits import Refused
from mainspring.server.openapi import openapi_document
from mainspring.server.poll import REGISTRATION_FIX
from mainspring.server.run_wait import readable, run_summary
from mainspring.server.runs_api import rerun_data
from mainspring.server.runs_api import routes as runs_routes
from mainspring.server.sync_status import SyncProblem, SyncStatus, claimed_url

#: Largest request body accepted (a send of events), as the reference's cap; other routes
#: have their own caps in :mod:`.limits`.
MAX_BODY_BYTES = limits.EVENTS_BODY_BYTES


def _run_data(run: Run) -> dict[str, Any]:
    # While a retry is pending: the attempt that failed and when the next one runs.
    return {**run_summary(run), "last_error": None}


def _job_data(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind.value,
        "step_id": job.step_id,
        "run_at": job.run_at,
        "attempt": job.attempt,
    }


def _event_data(event: StoredEvent) -> dict[str, Any]:
    return {
        "internal_id": event.internal_id,
        "id": event.id,
        "name": event.name,
        "data": readable(event.data),
        "ts": event.ts,
        "received_at": event.received_at,
    }


async def _claimed_url(request: Request) -> str | None:
    """The serve URL a refused registration's body names, if it can be read."""
    try:
        return claimed_url(await limits.read_json(request, limits.REGISTER_BODY_BYTES))
    except Refused:
        return None


class _App(Starlette):
    """Starlette with :class:`~.guard.Contained` outside its whole middleware stack."""

    def __init__(self, *, kind: str, **options: Any) -> None:
        self.kind = kind
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return Contained(super().build_middleware_stack(), kind=self.kind)


def create_app(
    engine: Engine,
    *,
    dev: bool = True,
    event_keys: frozenset[str] = frozenset(),
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
    start_options: Mapping[str, Any] | None = None,
    sync_status: SyncStatus | None = None,
) -> Starlette:
    """The API for ``engine``.

    In dev mode any non-empty event key is accepted and nothing is authenticated. Otherwise
    (``mainspring start``) events need one of ``event_keys`` and every other route a
    ``Bearer`` token matching ``signing_key`` or ``signing_key_fallback`` (raw or hashed,
    protocol §9). Malformed keys raise :class:`ValueError` here, so that no request can
    meet one. ``start_options`` are shown by ``GET /dev`` (how the server was started).
    ``sync_status`` is where registrations are noted, shared with the poller (a new one if
    None; ``app.state.sync_status`` either way).
    """
    kind = "dev" if dev else "cloud"
    engine.run_log.tracebacks = dev  # `mainspring start` logs failures without their stacks
    signing_keys: Sequence[str] = ()
    accepted = EventKeys(() if dev else event_keys)
    if not dev and signing_key is not None:
        signing_keys = [signing_key] + ([signing_key_fallback] if signing_key_fallback else [])
        check_signing_keys(signing_keys)
    document = orjson.dumps(openapi_document(authenticated=bool(signing_keys)))
    kind_mismatches = KindMismatches()
    syncs = sync_status if sync_status is not None else SyncStatus(engine.clock.now_ms)

    def reply(data: Any, status: int = 200) -> Response:
        return json_response(data, status, kind=kind)

    def refused(request: Request) -> Response | None:
        """401 unless dev mode or the request carries a signing key."""
        if not signing_keys:
            return None
        presented = request.headers.get("authorization", "")
        if presented[:7].lower() == "bearer " and signing.any_key_matches(
            presented[7:].strip(), signing_keys
        ):
            return None
        return reply({"error": "a valid Authorization: Bearer signing key is required"}, 401)

    async def health(request: Request) -> Response:
        # A server whose database is gone takes events it cannot record: say so, so that a
        # load balancer sends them elsewhere.
        problem = await engine.database_problem()
        if problem is not None:
            return reply({"status": 503, "message": f"database unreachable: {problem}"}, 503)
        return reply({"status": 200, "message": "OK"})

    async def openapi(request: Request) -> Response:
        return Response(
            document, media_type="application/json", headers={"x-inngest-server-kind": kind}
        )

    async def send_events(request: Request) -> Response:
        key = request.path_params["key"]
        if not (key if dev else accepted.accepts(key)):
            return reply({"ids": [], "status": 401, "error": "Event key not found"}, 401)
        # No nesting check on the whole body: the intake checks each event's data, naming it.
        payload = await limits.read_json(request, limits.EVENTS_BODY_BYTES, depth=None)
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > MAX_EVENTS_PER_SEND:  # before building any: a 3 MB body holds 200k
            problem = f"too many events in one send: {len(items)} > {MAX_EVENTS_PER_SEND}"
            return reply({"ids": [], "status": 400, "error": problem}, 400)
        events = [event_from(item, index) for index, item in enumerate(items)]
        try:
            ids = await engine.send(events, id_seed=request.headers.get("x-inngest-event-id-seed"))
        except EventInvalidError as exc:
            return reply({"ids": [], "status": 400, "error": str(exc)}, 400)
        except UnitUndoneError as exc:
            # Nothing of the send was recorded, through no fault of its own: say so, and
            # that sending again is the fix (SDKs resend a 5xx by themselves).
            problem = f"the events were not recorded ({exc}): send them again"
            return reply({"ids": [], "status": 503, "error": problem}, 503)
        return reply({"ids": ids, "status": 200})

    async def register(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        expected = request.headers.get("x-inngest-expected-server-kind")
        if expected and expected != kind:
            wanted = f"Expected server kind {expected}, got {kind}"
            mismatch = SyncProblem(wanted, kind_fix(dev=dev))
            problem = f"{mismatch.message}: {mismatch.fix}"
            kind_mismatches.say(request, problem)
            refused_sync(await _claimed_url(request), mismatch)
            return reply({"error": problem}, 400)
        payload = await limits.read_json(request, limits.REGISTER_BODY_BYTES)
        try:
            registration = parse_registration(payload)
            await engine.register_app(registration)
        except RegistrationError as exc:
            refused_sync(claimed_url(payload), SyncProblem(str(exc), REGISTRATION_FIX))
            return reply({"error": str(exc), "data": exc.errors, "status": 400}, 400)
        except (ValueError, MainspringError) as exc:
            refused_sync(claimed_url(payload), SyncProblem(str(exc), REGISTRATION_FIX))
            return reply({"error": str(exc), "status": 400}, 400)
        syncs.synced(registration.url)
        kind_mismatches.over(request)
        app_id = uuid.uuid5(uuid.NAMESPACE_URL, registration.app_name)
        return reply(
            {"ok": True, "modified": True, "sync_id": str(uuid.uuid4()), "app_id": str(app_id)}
        )

    def refused_sync(url: str | None, problem: SyncProblem) -> None:
        """A registration refused: noted for the Apps page under the URL its body names
        (a body that names none is only answered)."""
        if url is not None:
            syncs.failed(url, problem, source="register")

    async def invoke(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        payload = await limits.read_json(request, limits.INVOKE_BODY_BYTES, depth=None, empty={})
        if not isinstance(payload, dict):
            return reply({"error": "the body must be a JSON object", "status": 400}, 400)
        data = payload.get("data")
        if data is not None and not isinstance(data, dict):
            return reply({"error": "data must be a JSON object", "status": 400}, 400)
        if data is not None and nests_deeper(data, MAX_DATA_DEPTH):
            problem = f"data: nests deeper than {MAX_DATA_DEPTH} levels"
            return reply({"error": problem, "status": 400}, 400)
        try:
            event_id = await engine.invoke(request.path_params["slug"], data)
        except EventInvalidError as exc:
            return reply({"error": str(exc), "status": 400}, 400)
        except MainspringError as exc:
            return reply({"error": str(exc), "status": 404}, 404)
        return reply({"id": event_id, "status": 200})

    async def app_functions(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        name = request.path_params["app"]
        functions = engine.apps().get(name)
        if functions is None:
            return reply({"error": f"no app {name!r}"}, 404)
        listed = [
            {
                "id": fn.id,
                "slug": fn.id,
                "name": fn.name,
                "triggers": [t.to_wire() for t in fn.config.triggers],
            }
            for fn in functions
        ]
        return reply({"data": {"app": name, "functions": listed}})

    async def list_events(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        limit = limits.limit_param(request)
        before = limits.ulid_param(request, "cursor")
        events = await engine.events(
            name=request.query_params.get("name"), limit=limit, before=before
        )
        return reply({"data": [_event_data(e) for e in events], "metadata": {}})

    async def get_event(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        event = await engine.event(request.path_params["event_id"])
        if event is None:
            return reply({"error": "event not found"}, 404)
        data = _event_data(event)
        runs = len(await engine.runs(event.internal_id))
        # Why it started nothing, if it did not (engine/notices.py).
        data["note"] = event_note(event.name, runs=runs, listens=engine.listens(event.name))
        return reply({"data": data})

    async def run_data(run: Run) -> dict[str, Any]:
        data = _run_data(run)
        if not run.status.finished:
            # What flow control holds it back for (a slot, a throttle, a batch, a debounce).
            data["waiting_for"] = await engine.waiting_for(run.id)
            data["last_error"] = await last_error(engine, run.id)
        # Where a rerun came from (Engine.rerun): {"run_id", "from_step"}, else null.
        origin = await engine.rerun_origin(run.id)
        data["rerun_of"] = None if origin is None else rerun_data(origin)
        return data

    async def event_runs(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        runs = await engine.runs(request.path_params["event_id"])
        return reply({"data": [await run_data(r) for r in runs]})

    async def run_item(request: Request) -> Response:
        """``GET`` a run, or ``DELETE`` (cancel) it: one route, so that a 405 on this path
        lists both methods in ``Allow``."""
        if (denied := refused(request)) is not None:
            return denied
        try:
            if request.method == "DELETE":
                cancelled = await engine.cancel(request.path_params["run_id"])
                return reply({"data": {"cancelled": cancelled}})
            run = await engine.run(request.path_params["run_id"])
        except MainspringError:
            return reply({"error": "run not found"}, 404)
        return reply({"data": await run_data(run)})

    async def remove_app(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        url = request.query_params.get("url")
        if not url:
            return reply({"error": "the url query parameter is required", "status": 400}, 400)
        removed = await engine.remove_app(url)
        syncs.forget(url)
        if not removed:
            return reply({"error": f"no app is synced from {url}", "status": 404}, 404)
        return reply({"ok": True, "removed": removed})

    async def cancel_run_v0(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            await engine.cancel(request.path_params["run_id"])
        except MainspringError:
            return reply({"error": "run not found"}, 404)
        return Response(status_code=204, headers={"x-inngest-server-kind": kind})

    async def run_jobs(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        run_id = request.path_params["run_id"]
        try:
            await engine.run(run_id)
        except MainspringError:
            return reply({"error": "run not found"}, 404)
        jobs = await engine.jobs(run_id)
        return reply({"data": [_job_data(job) for job in jobs]})

    async def run_batch(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        state = await engine.run_state(request.path_params["run_id"])
        return reply({"error": "run not found"}, 410) if state is None else reply(state[0])

    async def run_actions(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        state = await engine.run_state(request.path_params["run_id"])
        return reply({"error": "run not found"}, 410) if state is None else reply(state[1])

    async def graphql(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        if request.method == "GET":
            query: Any = dict(request.query_params)
            if "variables" in query:
                try:
                    query["variables"] = orjson.loads(query["variables"])
                except orjson.JSONDecodeError as exc:
                    return reply({"errors": [{"message": f"variables: not JSON: {exc}"}]}, 400)
                if nests_deeper(query["variables"], limits.MAX_BODY_DEPTH):
                    problem = f"variables: nest deeper than {limits.MAX_BODY_DEPTH} levels"
                    return reply({"errors": [{"message": problem}]}, 400)
        else:
            try:
                query = await limits.read_json(request, limits.GRAPHQL_BODY_BYTES)
            except Refused as exc:
                if exc.status == 413:
                    raise
                return reply({"data": None, "errors": [{"message": exc.message}]}, exc.status)
        status, payload = await gql.execute(engine, query, read_only=request.method == "GET")
        return reply(payload, status)

    async def dev_info(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        return reply(dev_server_info(engine, kind=kind, start_options=start_options or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with engine:
            yield

    app = _App(
        kind=kind,
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/dev", dev_info, methods=["GET"]),
            Route("/v0/gql", graphql, methods=["GET", "POST"]),
            Route("/e/{key}", send_events, methods=["POST"]),
            Route("/fn/register", register, methods=["POST"]),
            Route("/fn/remove", remove_app, methods=["DELETE"]),
            Route("/invoke/{slug}", invoke, methods=["POST"]),
            Route("/v1/apps/{app}/functions", app_functions, methods=["GET"]),
            Route("/v1/events", list_events, methods=["GET"]),
            Route("/v1/events/{event_id}", get_event, methods=["GET"]),
            Route("/v1/events/{event_id}/runs", event_runs, methods=["GET"]),
            Route("/v1/runs/{run_id}", run_item, methods=["GET", "DELETE"]),
            Route("/v1/runs/{run_id}/jobs", run_jobs, methods=["GET"]),
            *runs_routes(
                engine, reply=reply, refused=refused, run_data=run_data, sync_status=syncs
            ),
            *checkpoint_api.routes(engine, reply=reply, refused=refused),
            Route("/v0/runs/{run_id}", cancel_run_v0, methods=["DELETE"]),
            Route("/v0/runs/{run_id}/batch", run_batch, methods=["GET"]),
            Route("/v0/runs/{run_id}/actions", run_actions, methods=["GET"]),
            *dashboard.routes(engine, kind=kind, signing_keys=signing_keys, sync_status=syncs),
        ],
        exception_handlers=exception_handlers(kind),
        lifespan=lifespan,
    )
    app.state.sync_status = syncs
    return app
