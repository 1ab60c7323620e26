"""The checkpoint API of protocol §13: ``POST /v1/checkpoint/{run_id}/async``, where a
checkpointing SDK (the official TypeScript SDK v4 by default) records the steps of the
call it is answering, so that it runs them without a round trip each.

Sync mode (durable endpoints: an ordinary HTTP route that uses steps and creates its own
run with ``POST /v1/checkpoint``, ``/steps``, ``/output``) is not served: those routes
answer 404 naming what is not supported, rather than a bare 404 that reads like a
broken server (a 4xx: nothing failed, the server has no such feature). Each
route is also served under the reference's alias prefix ``/v1/http/runs``.

Authenticated as the other routes an SDK calls (``Bearer`` signing key) when the server
has keys. The engine's side (what is recorded, and when a checkpoint is refused) is
:mod:`mainspring.engine.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mainspring.engine.checkpoint import CheckpointRefused
from mainspring.engine.engine import Engine
from mainspring.server import limits

#: A checkpoint carries a few steps' outputs (each up to the protocol's 4 MB).
CHECKPOINT_BODY_BYTES: Final = 16 * 1024 * 1024

#: Where the routes are served: the reference's name, and its alias.
PREFIXES: Final = ("/v1/checkpoint", "/v1/http/runs")

_SYNC_MODE: Final = (
    "sync-mode checkpointing (durable endpoints: runs an HTTP route creates itself) is not "
    "supported by this server; only POST /v1/checkpoint/{run_id}/async, for calls the "
    "server makes, is. Serve the function with the SDK's serve handler instead"
)

Reply = Callable[..., Response]
Refuser = Callable[[Request], Response | None]


def routes(engine: Engine, *, reply: Reply, refused: Refuser) -> list[BaseRoute]:
    """The checkpoint routes, under both prefixes."""

    async def checkpoint_async(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        run_id = request.path_params["run_id"]
        payload = await limits.read_json(request, CHECKPOINT_BODY_BYTES)
        try:
            recorded = await engine.checkpoint(run_id, payload)
        except CheckpointRefused as exc:
            return reply({"error": exc.message, "status": exc.status}, exc.status)
        return reply({"data": {"run_id": run_id, "recorded": recorded}})

    async def sync_mode(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        route = request.url.path
        return reply({"error": f"{route}: {_SYNC_MODE}", "status": 404}, 404)

    found: list[BaseRoute] = []
    for prefix in PREFIXES:
        found += [
            Route(f"{prefix}/{{run_id}}/async", checkpoint_async, methods=["POST"]),
            Route(prefix, sync_mode, methods=["POST"]),
            Route(f"{prefix}/{{run_id}}/steps", sync_mode, methods=["POST"]),
            Route(f"{prefix}/{{run_id}}/output", sync_mode, methods=["GET"]),
        ]
    return found
