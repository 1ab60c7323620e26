"""Bulk work of the client commands, with progress that moves as the work is done:
``cancel --function F`` and ``rerun ID ID ...``.

``cancel --function F [--from T] [--until T] [--where CEL]`` lists the function's
unfinished runs in the window (``Queued`` and ``Running``: not started yet, held back by
flow control, sleeping, waiting for an event, held for a missing function), page by page
(``GET /v1/runs``, newest first), then cancels them one by one (``DELETE
/v1/runs/{id}``, a few requests in flight), the bar advancing with each answer.

Why not one ``POST /v1/cancellations``: it answers when every run is cancelled, so nothing
could show how far it got, and an interrupted command could not say what it had done. Run
by run, Ctrl-C stops it with the count of runs cancelled, and the same command again
cancels the rest.

The window is fixed when the listing begins. The listing pages backwards from the newest
run by id (ids grow with time), so a run created while the command works is never listed:
without ``--until`` the window ends at that moment, and the output says when. A listed run
that finishes on its own before its turn is counted apart, not as cancelled.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mainspring.cli import render
from mainspring.cli.args import rfc3339
from mainspring.cli.client import CliError, Server

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Largest page the server hands out (``server/limits.py``).
PAGE = 1000
#: Cancellations in flight at once: each is one store unit on the server, and units that
#: arrive together are committed together, so a few at a time go several times faster than
#: one by one without crowding out the server's other work.
CANCEL_WORKERS = 4
#: Unfinished runs are the ones in these statuses.
UNFINISHED = ("Queued", "Running")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Meter:
    """How far bulk work has got, on stderr: a rich bar on a terminal; elsewhere (a pipe,
    a CI log) a line at every tenth of the total, so that a log shows it move without a
    line per item."""

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._console = render.console(stderr=True)
        self._step = max(1, math.ceil(total / 10))
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Meter:
        if self._console.is_terminal:
            # rich.progress is imported only here: most commands never draw a bar.
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        else:
            self._line()
        return self

    def advance(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done // self._step > before // self._step or (
            self.done == self.total and before < self.total
        ):
            self._line()

    def _line(self) -> None:
        self._console.print(f"{self.description}: {self.done}/{self.total}", markup=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def _searching(description: str) -> Iterator[Any]:
    """A counter of what a listing has found so far, on a terminal; nothing elsewhere."""
    console = render.console(stderr=True)
    if not console.is_terminal:
        yield lambda count: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}: {task.completed}"), console=console
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda count: bar.update(task, completed=count)


def list_run_ids(server: Server, params: dict[str, Any], description: str) -> list[str]:
    """The ids of every run ``GET /v1/runs`` lists with ``params``, newest first, following
    its cursor to the end."""
    found: list[str] = []
    cursor: str | None = None
    with _searching(description) as show:
        while True:
            page_params = {**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})}
            answer = server.get("/v1/runs", page_params)
            page = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(page, list):
                raise CliError(f"GET /v1/runs: unexpected answer {render.short_json(answer)}")
            found.extend(str(run["run_id"]) for run in page if isinstance(run, dict))
            show(len(found))
            following = answer.get("cursor")
            # A filtered page may be short, even empty, and still have a next page.
            if not following or following == cursor:
                return found
            cursor = following


def _window(args: argparse.Namespace, began: datetime.datetime) -> str:
    start = args.from_ or "the first run"
    end = args.until or f"now ({rfc3339(began)}; later runs are left alone)"
    where = f", whose event matches {args.where}" if args.where else ""
    return f"queued from {start} until {end}{where}"


def cancel_runs(server: Server, args: argparse.Namespace, filters: dict[str, Any]) -> int:
    """``cancel --function F``: see the module doc."""
    began = datetime.datetime.now(datetime.UTC)
    function = args.function
    window = _window(args, began)
    params = {**filters, "status": list(UNFINISHED)}
    run_ids = list_run_ids(server, params, f"Finding the unfinished runs of {function}")
    out = render.console()
    if not run_ids:
        _known_function(server, function)
        out.print(f"No unfinished runs of {function} {window}", markup=False)
        return 0
    outcome: dict[str, bool | None] = {}
    interrupted = False
    description = f"Cancelling {plural(len(run_ids), 'run')} of {function}"
    with Meter(description, len(run_ids)) as meter:

        def record(run_id: str, cancelled: bool | None) -> None:
            outcome[run_id] = cancelled
            meter.advance()

        failure: CliError | None = None
        try:
            _cancel_each(server, run_ids, record)
        except KeyboardInterrupt:
            interrupted = True
        except CliError as exc:  # the server went away, or refused: say what was done first
            failure = exc
    cancelled_ids = [run_id for run_id in run_ids if outcome.get(run_id)]
    out.print(f"Cancelled {plural(len(cancelled_ids), 'run')} of {function} {window}", markup=False)
    _ids(cancelled_ids)
    finished = [run_id for run_id in run_ids if outcome.get(run_id) is False]
    if finished:
        out.print(f"Left alone, finished on their own meanwhile: {plural(len(finished), 'run')}")
        _ids(finished)
    gone = [run_id for run_id in run_ids if run_id in outcome and outcome[run_id] is None]
    if gone:
        out.print(f"No longer on the server: {plural(len(gone), 'run')}")
        _ids(gone)
    if interrupted or failure is not None:
        left = len(run_ids) - len(outcome)
        # The same window again: without --until, the one this command fixed.
        again = ["mainspring", "cancel", "--function", function]
        again += ["--from", args.from_] if args.from_ else []
        again += ["--until", args.until or rfc3339(began)]
        again += ["--where", args.where] if args.where else []
        print(
            f"mainspring: {'interrupted' if interrupted else 'stopped'} with "
            f"{plural(left, 'run')} left; to cancel them: {shlex.join(again)}",
            file=sys.stderr,
        )
    if failure is not None:
        raise failure
    return 130 if interrupted else 0


def _ids(run_ids: Sequence[str]) -> None:
    # Plain writes: rich's print costs ~0.1 ms a call, seconds for a bulk of 10,000 ids.
    sys.stdout.write("".join(f"  {run_id}\n" for run_id in run_ids))
    sys.stdout.flush()


def _cancel_each(
    server: Server, run_ids: Sequence[str], record: Callable[[str, bool | None], None]
) -> None:
    """Cancels each run, calling ``record(run id, whether it was cancelled)`` as the answers
    come (None: the server has no such run any more); a few requests in flight, each
    thread on a connection of its own. Stopped early (Ctrl-C, an error), it asks for no
    other run, and still records the answers of the requests in flight: those runs are
    cancelled on the server, and the summary must say so."""
    # Only a bulk cancel uses a pool: not imported with the module (~6 ms of every command).
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    clients: list[Server] = []

    def cancel_one(run_id: str) -> tuple[str, bool | None]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = server.clone()
            clients.append(client)
        try:
            answer = client.delete(f"/v1/runs/{quote(run_id, safe='')}")
        except CliError as exc:
            if exc.status == 404:
                return run_id, None
            raise
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("cancelled"), bool):
            raise CliError(f"DELETE /v1/runs/{{id}}: unexpected answer {answer!r}")
        return run_id, data["cancelled"]

    pool = ThreadPoolExecutor(CANCEL_WORKERS, thread_name_prefix="cancel")
    pending: set[Future[tuple[str, bool | None]]] = set()
    try:
        # Only a few requests are handed to the pool at a time, so that stopping early
        # leaves the rest of the runs alone.
        for run_id in run_ids:
            pending.add(pool.submit(cancel_one, run_id))
            if len(pending) >= CANCEL_WORKERS * 2:
                _collect(pending, record, first=True)
        _collect(pending, record, first=False)
    finally:
        for future in pending:
            future.cancel()  # not started yet: never sent
        pool.shutdown(wait=True)
        for future in pending:
            if not future.cancelled() and future.exception() is None:
                record(*future.result())
        for client in clients:
            client.close()


def _collect(
    pending: set[Future[tuple[str, bool | None]]],
    record: Callable[[str, bool | None], None],
    *,
    first: bool,
) -> None:
    """Records the answers that are in (at least one; all of them unless ``first``),
    taking them out of ``pending``; then raises the first failure among them, if any."""
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, wait

    done, _ = wait(pending, return_when=FIRST_COMPLETED if first else ALL_COMPLETED)
    pending.difference_update(done)
    failure: BaseException | None = None
    for future in done:
        exc = future.exception()
        if exc is None:
            record(*future.result())
        elif failure is None:
            failure = exc
    if failure is not None:
        raise failure


def _known_function(server: Server, function: str) -> None:
    """Refuses a function id the server does not know (a typo would otherwise read as
    "nothing to cancel"); the runs of a function a deploy dropped are still listed."""
    answer = server.get("/v1/functions")
    listed = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        return
    ids = {str(fn.get("id")) for fn in listed if isinstance(fn, dict)}
    if function not in ids:
        shown = ", ".join(sorted(ids)) or "none"
        raise CliError(
            f"no function {function!r} on this server, and no unfinished run of it "
            f"(functions: {shown})"
        )


def rerun_runs(server: Server, run_ids: Sequence[str], from_step: str | None) -> int:
    """``rerun ID ID ...``: one request per run, the bar advancing with each. A run the
    server refuses is reported and the others go on; exit code 1 if any was refused."""
    body = {"from_step": from_step} if from_step else {}
    started: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    interrupted = False
    failure: CliError | None = None
    with Meter(f"Rerunning {plural(len(run_ids), 'run')}", len(run_ids)) as meter:
        try:
            for run_id in run_ids:
                try:
                    answer = server.post(f"/v1/runs/{quote(run_id, safe='')}/rerun", body)
                except CliError as exc:
                    if exc.status is None:
                        raise  # the server is gone: every other rerun would fail too
                    refused.append((run_id, str(exc)))
                else:
                    data = answer.get("data") if isinstance(answer, dict) else None
                    new_id = data.get("run_id") if isinstance(data, dict) else None
                    if not new_id:
                        raise CliError(f"POST /v1/runs/{{id}}/rerun: unexpected answer {answer!r}")
                    started.append((run_id, str(new_id)))
                meter.advance()
        except KeyboardInterrupt:
            interrupted = True
        except CliError as exc:  # said after what was done
            failure = exc
    out = render.console()
    step = f" from step {from_step}" if from_step else ""
    for run_id, new_id in started:
        out.print(f"Rerun of {run_id}{step}: new run {new_id}")
    for run_id, message in refused:
        print(f"mainspring: error: rerun of {run_id}: {message}", file=sys.stderr)
    if interrupted or failure is not None:
        left = len(run_ids) - len(started) - len(refused)
        how = "interrupted" if interrupted else "stopped"
        print(f"mainspring: {how} with {plural(left, 'run')} not rerun", file=sys.stderr)
    if failure is not None:
        raise failure
    if interrupted:
        return 130
    return 1 if refused else 0
