"""The server's HTTP API on Starlette: events in (``/e``), apps in (``/fn/register``), runs
out (``/v1``), state for large runs (``/v0/runs``) — protocol §1.3-§1.4, §2.4, §8.3, §12.

Every answer carries ``X-Inngest-Server-Kind``. Bad input gets a 4xx naming the problem;
the server never answers 500 for it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mainspring.engine.engine import Engine
from mainspring.engine.records import Job, Run, StoredEvent
from mainspring.engine.remote import RegistrationError, parse_registration
from mainspring.errors import EventInvalidError, MainspringError
from mainspring.protocol import signing
from mainspring.sdk.event import Event
from mainspring.server import graphql as gql
from mainspring.server.dev_info import dev_server_info

#: Largest request body accepted (events and registrations), as the reference's cap.
MAX_BODY_BYTES = 3 * 1024 * 1024


def _json(data: Any, status: int = 200, *, kind: str) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"x-inngest-server-kind": kind},
    )


def _run_data(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "function_id": run.function_id,
        "event_id": run.event_id,
        "status": run.status.value,
        "run_started_at": run.started_at,
        "ended_at": run.ended_at,
        "output": run.output,
        "error": run.error,
    }


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
        "data": event.data,
        "ts": event.ts,
        "received_at": event.received_at,
    }


def create_app(
    engine: Engine,
    *,
    dev: bool = True,
    event_keys: frozenset[str] = frozenset(),
    signing_key: str | None = None,
    start_options: Mapping[str, Any] | None = None,
) -> Starlette:
    """The API for ``engine``.

    In dev mode any non-empty event key is accepted and nothing is authenticated. Otherwise
    (``mainspring start``) events need one of ``event_keys`` and every other route a
    ``Bearer`` token matching ``signing_key`` (raw or hashed, protocol §9).
    ``start_options`` are shown by ``GET /dev`` (how the server was started).
    """
    kind = "dev" if dev else "cloud"

    def reply(data: Any, status: int = 200) -> Response:
        return _json(data, status, kind=kind)

    def refused(request: Request) -> Response | None:
        """401 unless dev mode or the request carries the signing key."""
        if dev or signing_key is None:
            return None
        presented = request.headers.get("authorization", "")
        if presented.lower().startswith("bearer ") and signing.keys_match(
            presented[7:].strip(), signing_key
        ):
            return None
        return reply({"error": "a valid Authorization: Bearer signing key is required"}, 401)

    async def body_json(request: Request) -> Any:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"the body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the body is not valid JSON: {exc}") from exc

    async def health(request: Request) -> Response:
        return reply({"status": 200, "message": "OK"})

    async def send_events(request: Request) -> Response:
        key = request.path_params["key"]
        if not key or (not dev and key not in event_keys):
            return reply({"ids": [], "status": 401, "error": "Event key not found"}, 401)
        try:
            payload = await body_json(request)
        except ValueError as exc:
            return reply({"ids": [], "status": 400, "error": str(exc)}, 400)
        items = payload if isinstance(payload, list) else [payload]
        events = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return reply(
                    {"ids": [], "status": 400, "error": f"event {index}: not a JSON object"}, 400
                )
            data = item.get("data")
            if isinstance(data, dict):
                data = {k: v for k, v in data.items() if k != "_inngest"}
            try:
                events.append(
                    Event(
                        name=item.get("name") or "",
                        data=data or {},
                        id=str(item.get("id") or ""),
                        ts=int(item.get("ts") or 0),
                    )
                )
            except (ValueError, TypeError) as exc:
                return reply({"ids": [], "status": 400, "error": f"event {index}: {exc}"}, 400)
        try:
            ids = await engine.send(events, id_seed=request.headers.get("x-inngest-event-id-seed"))
        except EventInvalidError as exc:
            return reply({"ids": [], "status": 400, "error": str(exc)}, 400)
        return reply({"ids": ids, "status": 200})

    async def register(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        expected = request.headers.get("x-inngest-expected-server-kind")
        if expected and expected != kind:
            return reply({"error": f"Expected server kind {expected}, got {kind}"}, 400)
        try:
            registration = parse_registration(await body_json(request))
            await engine.register_app(registration)
        except RegistrationError as exc:
            return reply({"error": str(exc), "data": exc.errors, "status": 400}, 400)
        except (ValueError, MainspringError) as exc:
            return reply({"error": str(exc), "status": 400}, 400)
        app_id = uuid.uuid5(uuid.NAMESPACE_URL, registration.app_name)
        return reply(
            {"ok": True, "modified": True, "sync_id": str(uuid.uuid4()), "app_id": str(app_id)}
        )

    async def invoke(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            payload = await body_json(request) if await request.body() else {}
        except ValueError as exc:
            return reply({"error": str(exc), "status": 400}, 400)
        data = payload.get("data") if isinstance(payload, dict) else None
        if data is not None and not isinstance(data, dict):
            return reply({"error": "data must be a JSON object", "status": 400}, 400)
        try:
            event_id = await engine.invoke(request.path_params["slug"], data)
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
        try:
            limit = min(int(request.query_params.get("limit", "100")), 1000)
        except ValueError:
            return reply({"error": "limit must be a whole number"}, 400)
        events = await engine.events(name=request.query_params.get("name"), limit=limit)
        return reply({"data": [_event_data(e) for e in events], "metadata": {}})

    async def get_event(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        event = await engine.event(request.path_params["event_id"])
        if event is None:
            return reply({"error": "event not found"}, 404)
        return reply({"data": _event_data(event)})

    async def run_data(run: Run) -> dict[str, Any]:
        data = _run_data(run)
        if not run.status.finished:
            # What flow control holds it back for (a slot, a throttle, a batch, a debounce).
            data["waiting_for"] = await engine.waiting_for(run.id)
        return data

    async def event_runs(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        runs = await engine.runs(request.path_params["event_id"])
        return reply({"data": [await run_data(r) for r in runs]})

    async def get_run(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            run = await engine.run(request.path_params["run_id"])
        except MainspringError:
            return reply({"error": "run not found"}, 404)
        return reply({"data": await run_data(run)})

    async def cancel_run(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            cancelled = await engine.cancel(request.path_params["run_id"])
        except MainspringError:
            return reply({"error": "run not found"}, 404)
        return reply({"data": {"cancelled": cancelled}})

    async def remove_app(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        url = request.query_params.get("url")
        if not url:
            return reply({"error": "the url query parameter is required", "status": 400}, 400)
        removed = await engine.remove_app(url)
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
        else:
            try:
                query = await body_json(request)
            except ValueError as exc:
                return reply({"data": None, "errors": [{"message": str(exc)}]}, 400)
        status, payload = await gql.execute(engine, query)
        return reply(payload, status)

    async def dev_info(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        return reply(dev_server_info(engine, kind=kind, start_options=start_options or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with engine:
            yield

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
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
            Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
            Route("/v1/runs/{run_id}", cancel_run, methods=["DELETE"]),
            Route("/v1/runs/{run_id}/jobs", run_jobs, methods=["GET"]),
            Route("/v0/runs/{run_id}", cancel_run_v0, methods=["DELETE"]),
            Route("/v0/runs/{run_id}/batch", run_batch, methods=["GET"]),
            Route("/v0/runs/{run_id}/actions", run_actions, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
