"""Tables of the client commands, with ``rich``.

Rows are the server's JSON as it comes; fields are read leniently (a missing one shows as
``-``), so that a server that adds or renames a field never breaks a listing.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Width when the output is not a terminal (a pipe, a test): wide enough for ids and times.
PIPE_WIDTH = 160

STATUS_STYLES = {
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
    "waiting": "blue",
    "skipped": "magenta",
}


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def field(item: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` that ``item`` holds (not None), else None."""
    for name in names:
        value = item.get(name)
        if value is not None:
            return value
    return None


def status_text(status: Any) -> Text:
    """A status in one spelling whatever the API's (``COMPLETED``, ``Completed``)."""
    if not isinstance(status, str) or not status:
        return Text("-")
    word = status.capitalize()
    return Text(word, style=STATUS_STYLES.get(status.lower(), ""))


def instant(value: Any) -> datetime.datetime | None:
    """Epoch milliseconds or an RFC 3339 string, as an aware datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return None


def when(value: Any) -> str:
    """A time in the local zone, to the second."""
    moment = instant(value)
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration in the unit that reads best."""
    if value is None or value < 0:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def between(start: Any, end: Any) -> float | None:
    began, ended = instant(start), instant(end)
    if began is None or ended is None:
        return None
    return (ended - began).total_seconds()


def short_json(value: Any, limit: int = 60) -> str:
    import orjson  # here, not at the top: its import is ~15 ms of every command's start

    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_json(value: Any) -> None:
    """Raw JSON for scripts: one document, indented, no colours."""
    import orjson

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(title: str | None, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        no_wrap = column in {"Run ID", "Event ID", "Started", "Received", "Status"}
        table.add_column(column, no_wrap=no_wrap, overflow="fold")
    return table


def runs_table(runs: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(None, "Run ID", "Function", "Status", "Started", "Duration", "Error")
    for run in runs:
        error = run.get("error")
        message = field(error, "message", "name") if isinstance(error, Mapping) else error
        started = field(run, "run_started_at", "started_at", "queued_at")
        table.add_row(
            str(field(run, "run_id", "id") or "-"),
            str(run.get("function_id") or "-"),
            status_text(run.get("status")),
            when(started),
            seconds(between(started, run.get("ended_at"))),
            short_json(message, 50) if message is not None else "",
        )
    return table


def events_table(events: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(None, "Event ID", "Name", "Received", "Data")
    for event in events:
        table.add_row(
            str(field(event, "internal_id", "id") or "-"),
            str(event.get("name") or "-"),
            when(field(event, "received_at", "ts")),
            short_json(event.get("data")),
        )
    return table


def _triggers(triggers: Any) -> str:
    if not isinstance(triggers, Iterable) or isinstance(triggers, str | bytes):
        return "-"
    shown = []
    for trigger in triggers:
        if not isinstance(trigger, Mapping):
            shown.append(str(trigger))
            continue
        if trigger.get("cron"):
            shown.append(f"cron {trigger['cron']}")
        elif trigger.get("event"):
            condition = trigger.get("expression")
            shown.append(f"{trigger['event']}" + (f" if {condition}" if condition else ""))
        elif trigger.get("value"):
            kind = str(trigger.get("type", "")).lower()
            shown.append(f"cron {trigger['value']}" if kind == "cron" else str(trigger["value"]))
    return ", ".join(shown) or "-"


def functions_table(functions: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(None, "Function", "Name", "App", "Triggers")
    for fn in functions:
        app = fn.get("app")
        app_name = field(app, "name", "id") if isinstance(app, Mapping) else app
        table.add_row(
            str(field(fn, "id", "slug") or "-"),
            str(fn.get("name") or "-"),
            str(app_name or field(fn, "app_name", "app_id") or "-"),
            _triggers(fn.get("triggers")),
        )
    return table


def apps_table(apps: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(None, "App", "URL", "SDK", "Version", "Functions", "Last sync", "Error")
    for app in apps:
        functions = app.get("functions")
        count = len(functions) if isinstance(functions, list) else field(app, "function_count")
        sdk = " ".join(
            str(part)
            for part in (
                field(app, "sdk_language", "sdk", "framework"),
                app.get("sdk_version"),
            )
            if part
        )
        error = field(app, "error", "sync_error", "last_sync_error")
        if isinstance(error, Mapping):
            fix = error.get("fix")
            error = field(error, "message", "error")
            error = f"{error} — fix: {fix}" if error and fix else error
        # An error older than the last sync (sync_failing false) is history: dimmed.
        error_style = "dim" if app.get("sync_failing") is False else "red"
        table.add_row(
            str(field(app, "name", "id", "app_id") or "-"),
            str(app.get("url") or "(in process)"),
            sdk or "-",
            str(field(app, "app_version", "version") or "-"),
            "-" if count is None else str(count),
            when(field(app, "synced_at", "last_synced_at", "last_sync"))
            if app.get("url")
            else "(loaded in process)",  # an embedded app never syncs over HTTP
            Text(str(error), style=error_style) if error else Text(""),
        )
    return table
