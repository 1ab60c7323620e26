"""The client commands: each reads a running server over HTTP (:mod:`.client`) and prints
what it answers (:mod:`.render`, :mod:`.timeline`), or raw JSON with ``--json``.

Routes: ``POST /e/{key}`` (send), ``GET /v1/runs`` (cursor paging), ``GET /v1/runs/{id}``
with the GraphQL trace (run), ``GET /v1/events``, ``GET /v1/functions``, ``GET /v1/apps``,
``DELETE /v1/runs/{id}`` (cancel; a function's runs are listed, then cancelled one by one:
see :mod:`.bulk`), ``POST /v1/runs/{id}/rerun`` (rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from mainspring.cli import bulk, render
from mainspring.cli.client import CliError, Server
from mainspring.sdk.settings import DEV_EVENT_KEY

#: Largest page the server hands out (``server/limits.py``).
PAGE = bulk.PAGE

Command = Callable[[Server, argparse.Namespace], int]


def _path(template: str, *ids: str) -> str:
    return template.format(*(quote(value, safe="") for value in ids))


def _data(answer: Any, what: str) -> Any:
    if not isinstance(answer, dict) or "data" not in answer:
        raise CliError(f"{what}: the server's answer has no data: {render.short_json(answer)}")
    return answer["data"]


def _pages(
    server: Server, path: str, params: dict[str, Any], limit: int, *, cursor_field: str | None
) -> list[Any]:
    """Up to ``limit`` items of a listing, following its cursor: the answer's ``cursor``,
    or (``cursor_field``) the last item's id while pages come back full."""
    items: list[Any] = []
    cursor: str | None = None
    while len(items) < limit:
        size = min(PAGE, limit - len(items))
        page_params = {**params, "limit": size, **({"cursor": cursor} if cursor else {})}
        answer = server.get(path, page_params)
        page = _data(answer, f"GET {path}")
        if not isinstance(page, list):
            raise CliError(f"GET {path}: expected a list, got {render.short_json(page)}")
        items.extend(page)
        if cursor_field is None:
            cursor = answer.get("cursor")
        else:
            last = page[-1] if page and len(page) >= size else None
            cursor = last.get(cursor_field) if isinstance(last, dict) else None
        # A page filtered by CEL may be short, even empty, and still have a next page.
        if not cursor:
            break
    return items[:limit]


def send(server: Server, args: argparse.Namespace) -> int:
    key = args.event_key or os.environ.get("INNGEST_EVENT_KEY") or DEV_EVENT_KEY
    extra = {"id": args.id} if args.id else {}
    try:
        data = json.loads(args.data, parse_constant=_not_json)
    except (ValueError, RecursionError):
        # Not JSON: sent as typed, so that the server's own 400 says what is wrong with it.
        head = _dumps({"name": args.name, **extra})[:-1]
        body = head + b',"data":' + args.data.encode() + b"}"
    else:
        body = _dumps({"name": args.name, "data": data, **extra})
    answer = server.post(_path("/e/{}", key), content=body)
    ids = answer.get("ids") if isinstance(answer, dict) else None
    out = render.console()
    for event_id in ids or []:
        out.print(f"Sent {args.name}: event {event_id}")
    return 0


def _not_json(constant: str) -> Any:
    # json reads NaN and Infinity, which are not JSON: the server is left to refuse them.
    raise ValueError(constant)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _run_filters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.function:
        params["function_id"] = args.function
    if getattr(args, "status", None):
        params["status"] = list(args.status)
    if args.from_:
        params["from"] = args.from_
    if args.until:
        params["until"] = args.until
    if getattr(args, "where", None):
        params["q"] = args.where
    return params


def runs(server: Server, args: argparse.Namespace) -> int:
    found = _pages(server, "/v1/runs", _run_filters(args), args.limit, cursor_field=None)
    return _listing(args, found, render.runs_table, "No runs match.")


def run(server: Server, args: argparse.Namespace) -> int:
    from mainspring.cli import timeline  # rich panels and groups: only this command draws them

    run_data = _data(server.get(_path("/v1/runs/{}", args.run_id)), "GET /v1/runs/{id}")
    found = server.graphql(timeline.RUN_QUERY, {"runID": args.run_id})
    gql_run = found.get("run") if isinstance(found, dict) else None
    trace = gql_run.get("trace") if isinstance(gql_run, dict) else None
    if args.json:
        render.print_json({"run": run_data, "trace": trace})
        return 0
    errors: list[tuple[str, Any]] = []
    steps = trace.get("childrenSpans") or [] if isinstance(trace, dict) else []
    for label, output_id in timeline.failed_spans(steps):
        output = server.graphql(timeline.OUTPUT_QUERY, {"outputID": output_id})
        span_output = output.get("runTraceSpanOutputByID") if isinstance(output, dict) else None
        if isinstance(span_output, dict) and span_output.get("error"):
            errors.append((label, span_output["error"]))
    timeline.render_run(render.console(), run_data, trace, errors)
    return 0


def events(server: Server, args: argparse.Namespace) -> int:
    params = {"name": args.name} if args.name else {}
    found = _pages(server, "/v1/events", params, args.limit, cursor_field="internal_id")
    return _listing(args, found, render.events_table, "No events.")


def functions(server: Server, args: argparse.Namespace) -> int:
    found = _data(server.get("/v1/functions"), "GET /v1/functions")
    return _listing(args, found, render.functions_table, "No functions registered.")


def apps(server: Server, args: argparse.Namespace) -> int:
    found = _data(server.get("/v1/apps"), "GET /v1/apps")
    return _listing(args, found, render.apps_table, "No apps synced.")


def _listing(args: argparse.Namespace, found: Any, table: Callable[[Any], Any], empty: str) -> int:
    """A listing command's output: the raw JSON with ``--json``, else a table, or ``empty``
    (dimmed) when there is nothing to list."""
    if args.json:
        render.print_json(found)
    elif found:
        render.console().print(table(found))
    else:
        render.console().print(empty, style="dim")
    return 0


def cancel(server: Server, args: argparse.Namespace) -> int:
    out = render.console()
    if args.run_id:
        if args.function or args.from_ or args.until or args.where:
            raise CliError(
                "cancel: give a run id or --function (with --from/--until/--where), not both", 2
            )
        answer = _data(server.delete(_path("/v1/runs/{}", args.run_id)), "DELETE /v1/runs/{id}")
        if isinstance(answer, dict) and answer.get("cancelled"):
            out.print(f"Cancelled run {args.run_id}")
            return 0
        status = _data(server.get(_path("/v1/runs/{}", args.run_id)), "GET /v1/runs/{id}")
        shown = render.status_text(status.get("status") if isinstance(status, dict) else None)
        out.print(f"Run {args.run_id} had already finished ({shown.plain}): nothing to cancel")
        return 0
    if not args.function:
        raise CliError("cancel: give a run id, or --function F [--from T] [--until T]", 2)
    return bulk.cancel_runs(server, args, _run_filters(args))


def rerun(server: Server, args: argparse.Namespace) -> int:
    run_ids = _ids(args.run_ids)
    if len(run_ids) > 1:
        return bulk.rerun_runs(server, run_ids, args.from_step)
    [run_id] = run_ids
    body = {"from_step": args.from_step} if args.from_step else {}
    answer = _data(server.post(_path("/v1/runs/{}/rerun", run_id), body), "rerun")
    new_id = answer.get("run_id") if isinstance(answer, dict) else None
    if not new_id:
        raise CliError(f"POST /v1/runs/{{id}}/rerun: unexpected answer {answer!r}")
    out = render.console()
    step = f" from step {args.from_step}" if args.from_step else ""
    out.print(f"Rerun of {run_id}{step}: new run {new_id}")
    out.print(f"  see it: mainspring run {new_id}", style="dim")
    return 0


def _ids(given: list[str]) -> list[str]:
    """Run ids as given, ``-`` standing for those read from stdin (whitespace-separated:
    ``mainspring runs --status failed --json | jq -r '.[].run_id' | mainspring rerun -``);
    each once, in order."""
    ids: list[str] = []
    for item in given:
        ids.extend(sys.stdin.read().split() if item == "-" else [item])
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise CliError("rerun: no run ids (stdin was empty)", 2)
    return unique
