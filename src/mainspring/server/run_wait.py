"""``POST /v1/runs/wait``: answer once the runs named have finished, or a timeout has passed
(a long poll).

A client that sent events learns when their runs end without polling: it names the events
(``event_ids``: the runs each had started when the request arrived) or the runs
(``run_ids``), and the answer comes when the last of them finishes. Waiting costs the
server one read of the runs and, per unfinished run, :meth:`Engine.wait
<mainspring.engine.engine.Engine.wait>`, which wakes when the run settles (no poll
interval, no repeated reads). The answer lists each run as ``GET /v1/runs/{id}`` does, less
what would need a read per run (``waiting_for``, ``last_error``, ``rerun_of``), with
``done`` telling whether all had finished; if not, ask again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mainspring.engine.engine import Engine
from mainspring.engine.records import Run
from mainspring.errors import RunNotFoundError
from mainspring.server import limits
from mainspring.server.limits import Refused

#: The body: two lists of ids (26-character ULIDs as the server makes them) and a number.
WAIT_BODY_BYTES: Final = 1024 * 1024
#: The most ids, events and runs together, one request waits for.
MAX_WAIT_IDS: Final = 10_000
#: The longest id taken (the server's are 26 characters; anything longer names nothing).
MAX_ID_CHARS: Final = 128
#: Seconds a request waits when it does not say, and at most (proxies cut longer requests).
DEFAULT_WAIT_S: Final = 30.0
MAX_WAIT_S: Final = 60.0

Reply = Callable[..., Response]
Refuser = Callable[[Request], Response | None]


@dataclass(frozen=True)
class WaitRequest:
    event_ids: tuple[str, ...]
    run_ids: tuple[str, ...]
    timeout: float


def parse_request(payload: Any) -> WaitRequest:
    """The request in ``payload`` (the parsed body); a :class:`Refused` 400 naming what is
    wrong with it."""
    if not isinstance(payload, dict):
        raise Refused(400, "the body must be a JSON object")
    event_ids = _ids(payload, "event_ids")
    run_ids = _ids(payload, "run_ids")
    if not event_ids and not run_ids:
        raise Refused(400, "event_ids, run_ids: name at least one event or run")
    if len(event_ids) + len(run_ids) > MAX_WAIT_IDS:
        raise Refused(400, f"event_ids, run_ids: at most {MAX_WAIT_IDS} ids together")
    timeout = payload.get("timeout", DEFAULT_WAIT_S)
    # bool is an int in Python, and true is no number of seconds.
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise Refused(400, f"timeout: expected seconds from 0 to {MAX_WAIT_S:g}")
    if not 0 <= timeout <= MAX_WAIT_S:
        raise Refused(400, f"timeout: expected seconds from 0 to {MAX_WAIT_S:g}, got {timeout}")
    return WaitRequest(event_ids, run_ids, float(timeout))


def _ids(payload: dict[str, Any], name: str) -> tuple[str, ...]:
    raw = payload.get(name)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Refused(400, f"{name}: expected a list of ids")
    if len(raw) > MAX_WAIT_IDS:
        raise Refused(400, f"{name}: at most {MAX_WAIT_IDS} ids, got {len(raw)}")
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ID_CHARS:
            raise Refused(
                400, f"{name}[{index}]: expected an id (a string of 1 to {MAX_ID_CHARS} chars)"
            )
    return tuple(raw)


async def wait_for_runs(engine: Engine, request: WaitRequest) -> list[Run]:
    """The runs ``request`` names, each once, as they are when the last finished or the
    timeout passed: the runs of each event in turn, then ``run_ids`` in their order.
    Raises :class:`~mainspring.RunNotFoundError` for a run id that names no run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout
    by_event = await engine.runs_for_events(request.event_ids) if request.event_ids else {}
    runs: dict[str, Run] = {}
    for event_id in request.event_ids:
        for run in by_event.get(event_id, ()):
            runs.setdefault(run.id, run)
    for run_id in request.run_ids:
        if run_id not in runs:
            runs[run_id] = await engine.run(run_id)
    pending = [run_id for run_id, run in runs.items() if not run.status.finished]
    if pending and request.timeout > 0:
        for run in await _settled(engine, pending, deadline - loop.time()):
            runs[run.id] = run
    return list(runs.values())


async def _settled(engine: Engine, run_ids: Sequence[str], timeout: float) -> list[Run]:
    """``engine.wait`` for each run at once; the others are not left waiting when one
    fails (or the request is dropped)."""
    tasks = [asyncio.ensure_future(engine.wait(run_id, timeout=timeout)) for run_id in run_ids]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def readable(value: Any) -> Any:
    """``value`` encoded on its own (so that its depth does not add to the envelope's), or
    ``{"_unreadable": reason}`` when it cannot be: one odd stored value never fails a
    whole answer (this one, or a listing of the server's)."""
    try:
        return orjson.Fragment(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as exc:
        return {"_unreadable": str(exc)}


def run_summary(run: Run) -> dict[str, Any]:
    """A run as ``GET /v1/runs/{id}`` shows it, from the run alone (no further read)."""
    return {
        "run_id": run.id,
        "function_id": run.function_id,
        "event_id": run.event_id,
        "status": run.status.value,
        "run_started_at": run.started_at,
        "ended_at": run.ended_at,
        "output": readable(run.output),
        "error": readable(run.error),
        "app_version": run.app_version,
    }


def routes(engine: Engine, *, reply: Reply, refused: Refuser) -> list[Route]:
    """The route, answering with the app's ``reply``, guarded by its ``refused``."""

    async def wait_runs(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        wanted = parse_request(await limits.read_json(request, WAIT_BODY_BYTES))
        try:
            runs = await wait_for_runs(engine, wanted)
        except RunNotFoundError as exc:
            return reply({"error": str(exc), "status": 404}, 404)
        done = all(run.status.finished for run in runs)
        return reply({"data": [run_summary(run) for run in runs], "done": done})

    return [Route("/v1/runs/wait", wait_runs, methods=["POST"])]
