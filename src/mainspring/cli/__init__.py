"""The ``mainspring`` command.

    mainspring --version
    mainspring dev [MODULE:ATTR] [-u URL ...] [options]      the development server
    mainspring start --signing-key KEY --event-key KEY ...   the server with keys required
    mainspring send NAME [--data JSON] [--id ID]
    mainspring runs [--function F] [--status S]... [--from T] [--until T] [--where CEL]
                    [--limit N] [--json]
    mainspring run ID [--json]                                status, error, step timeline
    mainspring events [--name N] [--limit N] [--json]
    mainspring functions [--json]
    mainspring apps [--json]
    mainspring cancel ID | cancel --function F [--from T] [--until T] [--where CEL]
    mainspring rerun ID [ID ... | -] [--from-step S]
    mainspring migrate [--database postgresql://...]         PostgreSQL schema migrations

The servers are in :mod:`.serve`. The other commands talk to a running server
(:mod:`.client`: ``--url`` / ``MAINSPRING_URL`` / ``INNGEST_BASE_URL``, default
http://127.0.0.1:8288; ``--signing-key`` / ``INNGEST_SIGNING_KEY`` for ``start``). Times
are RFC 3339 or a duration ago (``1h``, ``30m``). A failure is one line on stderr and exit
code 1; a usage error exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import mainspring
from mainspring.cli import args as types
from mainspring.cli.migrate import add_migrate_command
from mainspring.cli.serve import add_server_commands

if TYPE_CHECKING:
    from mainspring.engine.engine import Engine

__all__ = ["Engine", "main"]


def __getattr__(name: str) -> Any:
    # ``mainspring.cli.Engine``: the engine a server starts with, looked up when one starts,
    # so that tests can replace it (monkeypatch.setattr(cli, "Engine", ...)).
    if name == "Engine":
        from mainspring.engine.engine import Engine

        globals()["Engine"] = Engine
        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _connection_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--url",
        dest="server_url",
        default=default,
        metavar="URL",
        help="the server (MAINSPRING_URL, INNGEST_BASE_URL; default http://127.0.0.1:8288)",
    )
    parser.add_argument(
        "--signing-key",
        dest="client_signing_key",
        default=default,
        metavar="KEY",
        help="for a `mainspring start` server (INNGEST_SIGNING_KEY)",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print raw JSON (for scripts)")


def _time_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--from",
        dest="from_",
        type=types.time_arg,
        metavar="TIME",
        help=f"{what} at or after TIME: RFC 3339 or a duration ago (1h, 30m)",
    )
    parser.add_argument("--until", type=types.time_arg, metavar="TIME", help=f"{what} before TIME")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mainspring", description="Durable functions.")
    parser.add_argument(
        "--version", action="version", version=f"mainspring {mainspring.__version__}"
    )
    _connection_options(parser, None)
    # On each client command too (``mainspring runs --url ...``); SUPPRESS keeps a value
    # given before the command.
    shared = argparse.ArgumentParser(add_help=False)
    _connection_options(shared, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_server_commands(sub)
    add_migrate_command(sub)

    def client(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[shared], help=text, description=text)

    send = client("send", "send an event")
    send.add_argument("name", metavar="NAME")
    send.add_argument("--data", default="{}", metavar="JSON", help="the event's data object")
    send.add_argument("--id", help="the event's id (deduplicates sends)")
    send.add_argument("--event-key", help="the event key (INNGEST_EVENT_KEY; any in dev)")

    runs = client("runs", "list runs, newest first")
    runs.add_argument("--function", metavar="ID", help="runs of this function id")
    runs.add_argument(
        "--status",
        action="append",
        type=types.status_arg,
        metavar="STATUS",
        help=f"repeatable: {', '.join(types.STATUSES)}",
    )
    _time_options(runs, "runs queued")
    runs.add_argument("--where", metavar="CEL", help="CEL on the triggering event")
    runs.add_argument("--limit", type=types.limit_arg, default=20, help="default 20")
    _json_option(runs)

    run = client("run", "a run: status, error, timeline of its steps")
    run.add_argument("run_id", metavar="RUN_ID")
    _json_option(run)

    events = client("events", "list events, newest first")
    events.add_argument("--name", help="events of this name")
    events.add_argument("--limit", type=types.limit_arg, default=20, help="default 20")
    _json_option(events)

    _json_option(client("functions", "list registered functions"))
    _json_option(client("apps", "list synced apps"))

    cancel = client("cancel", "cancel a run, or a function's unfinished runs in a time range")
    cancel.add_argument("run_id", nargs="?", metavar="RUN_ID")
    cancel.add_argument("--function", metavar="ID", help="cancel this function's runs")
    _time_options(cancel, "runs queued")
    cancel.add_argument("--where", metavar="CEL", help="only runs whose event matches this CEL")

    rerun = client("rerun", "run runs again, each with the same events")
    rerun.add_argument(
        "run_ids", nargs="+", metavar="RUN_ID", help="one or more; - reads ids from stdin"
    )
    rerun.add_argument(
        "--from-step", metavar="STEP", help="reuse recorded outputs before this step"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The client commands' modules (rich, http.client) and the server's (the engine,
    # Starlette, uvicorn) are imported only by the commands that need them, so that
    # ``--version`` and ``--help`` start in ~0.1 s and the client commands in ~0.2 s, where
    # importing everything took ~1.3 s (tests/unit/test_import_cost.py holds that line).
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("dev", "start"):
        from mainspring.cli.serve import run_server

        # Through the module, so that its __getattr__ imports it or a test's stand-in wins.
        return run_server(args, engine_type=sys.modules[__name__].Engine)
    if args.command == "migrate":
        from mainspring.cli.migrate import run_migrate

        return run_migrate(args)
    from mainspring.cli import commands
    from mainspring.cli.client import CliError, Server, bearer, server_url

    try:
        url = server_url(args.server_url)
        with Server(url, bearer(args.client_signing_key)) as server:
            # Each client command is the function of `commands` of the same name.
            command: commands.Command = getattr(commands, args.command)
            return command(server, args)
    except CliError as exc:
        if exc.code == 2:
            parser.error(str(exc))
        print(f"mainspring: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("mainspring: interrupted", file=sys.stderr)
        return 130
