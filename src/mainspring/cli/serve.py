"""``mainspring dev`` and ``mainspring start``: the server.

    mainspring dev [MODULE:ATTR] [-u URL ...] [--host 127.0.0.1] [--port 8288]
                   [--database FILE|postgresql://...]
                   [--loop auto|asyncio|uvloop] [--http auto|h11|httptools]
                   [--poll-interval SECONDS | --no-poll] [--missing-function-grace 24h]
    mainspring start --signing-key KEY [--signing-key-fallback KEY] --event-key KEY
                     [same options]

``dev`` starts the server (event API, registration, REST) with no keys; ``start`` requires
the event key on ``/e`` and the signing key (as a bearer token) on every other route, and
signs its calls to apps. During a key rotation the fallback key's bearer tokens are
accepted too. The keys default to ``INNGEST_SIGNING_KEY``, ``INNGEST_SIGNING_KEY_FALLBACK``
and ``INNGEST_EVENT_KEY``; they are checked before anything starts, and a malformed one
stops the command with exit code 2. ``MODULE:ATTR``, imported from the current
directory, names a list of functions to run in the server's own process (their module's
``Client`` is used) or a ``Client`` (the module's functions of its app); ``-u URL``
names an app serving functions over HTTP, which the server asks to sync (a ``PUT`` on its
URL) until it has. ``dev`` then asks every app it knows to sync again every
``--poll-interval`` seconds (5; ``--no-poll``: never), as the reference dev server
does, so that an app restarted with other functions is synced (see ``server/poll.py``).
``--missing-function-grace`` is how long a run whose function is not registered is held
before it fails (``engine/held.py``; 24 h by default).

``--database`` (``MAINSPRING_DATABASE_URL``) is a SQLite file (``mainspring-dev.db`` by
default) or a ``postgresql://`` URL, which several server processes may share. The URL's
password is shown nowhere (``GET /dev`` reports it as ``***``); a database that cannot be
reached, or whose schema is newer than this mainspring, stops the command with a message
naming where it is, before the server starts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from mainspring.cli.migrate import DATABASE_ENV
from mainspring.protocol import signing
from mainspring.protocol.durations import DurationError, parse_duration_ms
from mainspring.server import keys

# The engine, the server and the SDK's client are imported by the functions that start a
# server, not here: `mainspring --version` and the client commands build the same parser
# and must not pay for them (tests/unit/test_import_cost.py holds that line).
if TYPE_CHECKING:
    from mainspring.engine.engine import Engine
    from mainspring.sdk.client import Client
    from mainspring.sdk.function import Function


def load_functions(spec: str) -> tuple[Client, list[Function[Any]]]:
    """Import ``MODULE:ATTR`` from the current directory: a list of functions (their
    module's ``Client`` serves them) or a ``Client`` (the module's functions of that app).
    Stops with one line naming what is missing."""
    from mainspring.sdk.client import Client
    from mainspring.sdk.function import Function

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"mainspring: expected MODULE:ATTR (e.g. app:functions), got {spec!r}")
    # As `python -m` would: the module is found from where the command runs, whatever
    # directory the `mainspring` script itself is installed in.
    cwd = os.getcwd()
    if cwd not in sys.path[:1]:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise SystemExit(
                f"mainspring: no module {module_name!r} in {cwd} (run the command from the "
                "directory that holds it)"
            ) from exc
        raise SystemExit(f"mainspring: cannot import {module_name!r}: {exc}") from exc
    except ImportError as exc:
        raise SystemExit(f"mainspring: cannot import {module_name!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise SystemExit(f"mainspring: module {module_name!r} has no attribute {attr!r}")
    value = getattr(module, attr)
    if isinstance(value, Client):
        found = [fn for fn in vars(module).values() if isinstance(fn, Function)]
        return value, [fn for fn in found if fn.app_id == value.app_id]
    if not isinstance(value, list | tuple) or not all(isinstance(fn, Function) for fn in value):
        raise SystemExit(
            f"mainspring: {spec!r} is a {type(value).__name__}, not a list of mainspring "
            "functions or a mainspring.Client"
        )
    clients = [item for item in vars(module).values() if isinstance(item, Client)]
    if not clients:
        raise SystemExit(f"mainspring: module {module_name!r} defines no mainspring.Client")
    return clients[0], list(value)


def serve_engine(
    args: argparse.Namespace, *, dev: bool, engine_type: type[Engine] | None = None
) -> None:
    # Imported here: the client commands need none of them (strawberry alone takes ~0.2 s).
    import asyncio

    import uvicorn

    from mainspring.engine.engine import Engine
    from mainspring.sdk.client import Client
    from mainspring.server.app import create_app
    from mainspring.server.one_write import one_write_protocol
    from mainspring.server.poll import DEFAULT_POLL_INTERVAL_S, poll_apps
    from mainspring.server.sync_status import SyncStatus

    engine_type = Engine if engine_type is None else engine_type

    if args.functions:
        client, functions = load_functions(args.functions)
    else:
        client, functions = Client(app_id="mainspring", is_production=not dev), []
    try:
        engine = engine_type(
            client,
            functions,
            database=args.db,
            durability=args.durability,
            retry_backoff=args.retry_backoff,
            signing_key=None if dev else args.signing_key,
            missing_function_grace=args.missing_function_grace,
            lease_seconds=args.lease_seconds,
            parallel_plans=not args.no_parallel_plans,
        )
    except ValueError as exc:  # an option the engine refuses: its message, not a traceback
        raise SystemExit(f"mainspring: {exc}") from exc
    # The poller and the server's routes (registration, Apps page, /v1/apps) share it.
    sync_status = SyncStatus(engine.clock.now_ms)
    app = create_app(
        engine,
        dev=dev,
        sync_status=sync_status,
        event_keys=frozenset(getattr(args, "event_key", None) or ()),
        signing_key=None if dev else args.signing_key,
        signing_key_fallback=None if dev else args.signing_key_fallback,
        start_options={
            "host": args.host,
            "port": args.port,
            "sdkURLs": list(args.url or ()),
            "functions": args.functions,
            "database": redact_url(str(args.db)),
            "durability": args.durability,
            "missingFunctionGrace": args.missing_function_grace,
            "parallelPlans": not args.no_parallel_plans,
            **({"poll": not args.no_poll, "pollInterval": args.poll_interval} if dev else {}),
        },
    )
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(starlette: Any) -> AsyncIterator[None]:
        async with inner(starlette):
            # What exists once the server is up (modules, the engine) lives as long as it:
            # moved out of the collector's reach, later full collections (which pause every
            # thread, GraphQL's included) only walk what requests create.
            gc.collect()
            gc.freeze()
            # `start` only asks the -u apps until they sync (deploys sync themselves).
            polled = dev and not args.no_poll
            pinger = (
                asyncio.create_task(
                    poll_apps(
                        args.url,
                        known=lambda: [app.url for app in engine.app_list() if app.url],
                        interval=args.poll_interval if dev else DEFAULT_POLL_INTERVAL_S,
                        poll=polled,
                        dev=dev,
                        status=sync_status,
                    )
                )
                if args.url or polled
                else None
            )
            try:
                yield
            finally:
                if pinger is not None:
                    pinger.cancel()

    app.router.lifespan_context = lifespan
    mode = "dev" if dev else "self-hosted"
    print(f"mainspring {mode} server on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        # uvicorn's own lines (its start-up banner, each request at "info") add nothing to
        # the engine's own: they show from "warning" up, and the access log under "debug".
        log_level=uvicorn_log_level(args.log_level),
        access_log=args.log_level == "debug",
        # "auto": uvloop and httptools (dependencies of ours) where they are installed, else
        # asyncio and h11; the options are there to rule one out. Either parser sends an
        # answer's head and body in one write (server/one_write.py).
        loop=args.loop,
        http=one_write_protocol(args.http),
    )


#: ``--log-level`` choices, most to least verbose.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def uvicorn_log_level(level: str) -> str:
    """uvicorn's level for the server's ``--log-level``: never below "warning", but for
    "debug"."""
    if level == "debug":
        return level
    return max(level, "warning", key=LOG_LEVELS.index)


def add_server_commands(commands: Any) -> None:
    """The ``dev`` and ``start`` subcommands on ``commands`` (argparse subparsers)."""
    dev_cmd = commands.add_parser("dev", help="run the development server (no keys)")
    start_cmd = commands.add_parser("start", help="run the server with keys required")
    start_cmd.add_argument(
        "--signing-key",
        help=f"signs calls, guards the API: {signing.SIGNING_KEY_FORM} (INNGEST_SIGNING_KEY)",
    )
    start_cmd.add_argument(
        "--signing-key-fallback",
        help="also guards the API, during a rotation (INNGEST_SIGNING_KEY_FALLBACK)",
    )
    start_cmd.add_argument(
        "--event-key",
        action="append",
        help=f"accepted by POST /e/{{key}}: {keys.EVENT_KEY_FORM}; repeatable (INNGEST_EVENT_KEY)",
    )
    for cmd in (dev_cmd, start_cmd):
        _server_options(cmd)
    dev_cmd.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=None,  # server.poll's DEFAULT_POLL_INTERVAL_S, filled in by run_server
        metavar="SECONDS",
        help="seconds between requests to every known app to sync again (default: 5)",
    )
    dev_cmd.add_argument(
        "--no-poll", action="store_true", help="ask apps to sync only until they have"
    )
    start_cmd.set_defaults(server_parser=start_cmd)


def run_server(args: argparse.Namespace, *, engine_type: type[Engine] | None = None) -> int:
    """``mainspring dev`` / ``mainspring start``: serve until stopped."""
    import logging

    from mainspring.engine import held
    from mainspring.server.poll import DEFAULT_POLL_INTERVAL_S

    if args.command == "start":
        _check_keys(args.server_parser, args)
    # The defaults the parser leaves out, so that building it imports neither module.
    if args.missing_function_grace is None:
        args.missing_function_grace = held.DEFAULT_GRACE.total_seconds()
    if args.command == "dev" and args.poll_interval is None:
        args.poll_interval = DEFAULT_POLL_INTERVAL_S
    if args.db is None:
        args.db = os.environ.get(DATABASE_ENV) or "mainspring-dev.db"
    _check_database(str(args.db))
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: the dev server's sync requests every few seconds.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    serve_engine(args, dev=args.command == "dev", engine_type=engine_type)
    return 0


def _check_keys(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop (exit code 2, naming the option and the expected form) on a missing or
    malformed key, before anything starts: no request can then meet a bad key."""
    # Keys not given as options come from the environment; errors say which.
    named = {"--signing-key": "--signing-key", "--signing-key-fallback": "--signing-key-fallback"}
    for option, attribute, variable in (
        ("--signing-key", "signing_key", "INNGEST_SIGNING_KEY"),
        ("--signing-key-fallback", "signing_key_fallback", "INNGEST_SIGNING_KEY_FALLBACK"),
    ):
        if getattr(args, attribute) is None and os.environ.get(variable) is not None:
            setattr(args, attribute, os.environ[variable])
            named[option] = f"{option} (from {variable})"
    if args.signing_key is None:
        command.error("--signing-key is required (or set INNGEST_SIGNING_KEY)")
    if not args.event_key:
        env_key = os.environ.get("INNGEST_EVENT_KEY")
        if env_key is None:
            command.error("--event-key is required (or set INNGEST_EVENT_KEY)")
        args.event_key = [env_key]
    for option, key in (
        ("--signing-key", args.signing_key),
        ("--signing-key-fallback", args.signing_key_fallback),
    ):
        if key is None:
            continue
        try:
            signing.check_signing_key(key)
        except signing.SigningKeyError as exc:
            command.error(
                f"{named[option]}: expected {signing.SIGNING_KEY_FORM}, "
                f"got {keys.describe(key)}: {exc}"
            )
    for key in args.event_key:
        try:
            keys.check_event_key(key)
        except ValueError as exc:
            command.error(f"--event-key: {exc}")


def _server_options(dev_cmd: argparse.ArgumentParser) -> None:
    dev_cmd.add_argument("functions", nargs="?", help="MODULE:ATTR, a list of functions")
    dev_cmd.add_argument("-u", "--url", action="append", default=[], help="an app's serve URL")
    dev_cmd.add_argument("--host", default="127.0.0.1")
    dev_cmd.add_argument("-p", "--port", type=int, default=8288)
    dev_cmd.add_argument(
        "--database",
        "--db",
        dest="db",
        default=None,  # MAINSPRING_DATABASE_URL, else mainspring-dev.db (see run_server)
        metavar="FILE|URL",
        help="a SQLite file, or postgresql://user@host/dbname to share one database between "
        f"server processes (default: {DATABASE_ENV}, else mainspring-dev.db)",
    )
    dev_cmd.add_argument("--durability", choices=["full", "normal"], default="normal")
    dev_cmd.add_argument(
        "--lease-seconds",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="on a shared PostgreSQL database: how long after a server stops renewing its "
        "jobs' leases (it died) the others take them over (default: 30)",
    )
    dev_cmd.add_argument(
        "--retry-backoff",
        type=float,
        default=None,
        help="seconds between retries (default: 15 s, 30 s, 1 m, ... with jitter)",
    )
    dev_cmd.add_argument(
        "--missing-function-grace",
        type=_grace_seconds,
        default=None,  # engine.held's DEFAULT_GRACE, filled in by run_server
        metavar="DURATION",
        help="how long a run whose function is not registered is held before it fails: "
        "a duration such as 24h, 90m or 3600 (seconds); default: 24h",
    )
    dev_cmd.add_argument(
        "--no-parallel-plans",
        action="store_true",
        help="call our SDK once per step of a parallel group, as other SDKs are called, so "
        "that a group's steps spread over an app's instances (default: a call that finds a "
        "group runs its steps side by side and answers them together)",
    )
    dev_cmd.add_argument(
        "--log-level",
        type=str.lower,  # "WARNING" as Python's logging spells it, too
        choices=LOG_LEVELS,
        default="info",
        help="what the server logs: 'info' (default) adds a line as each run starts and "
        "ends, 'warning' keeps only problems; 'debug' adds uvicorn's access log",
    )
    dev_cmd.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop (default: uvloop if installed)",
    )
    dev_cmd.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="HTTP/1.1 parser of the server (default: httptools if installed)",
    )


def redact_url(database: str) -> str:
    """``database`` with a URL's password replaced by ``***`` (a file path unchanged)."""
    parts = urllib.parse.urlsplit(database)
    if not parts.scheme or parts.password is None:
        return database
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def _check_database(database: str) -> None:
    """Reach a PostgreSQL database and bring its schema up to date before the server starts,
    so that a wrong URL is a one-line message rather than a failed start-up's traceback."""
    from mainspring.engine.store.backend import is_postgres

    if not is_postgres(database):
        return
    import psycopg

    from mainspring.engine.store.postgres import migrate
    from mainspring.engine.store.postgres.store import CONNECT_TIMEOUT, describe_url

    where = describe_url(database)
    try:
        with psycopg.connect(database, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            migrate.migrate(conn)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise SystemExit(f"mainspring: cannot connect to PostgreSQL at {where}: {reason}") from None
    except migrate.MigrationError as exc:
        raise SystemExit(f"mainspring: the database at {where}: {exc}") from None


def _positive_seconds(text: str) -> float:
    """A positive number of seconds (argparse names the option when this refuses it)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _grace_seconds(text: str) -> float:
    """A duration: a time string (``24h``, ``90m``, ``1d``) or a number of seconds."""
    from mainspring.engine import held  # only `dev` and `start` take this option

    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_duration_ms(text) / 1000
        except DurationError:
            seconds = float("nan")
    try:
        held.grace_ms(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 24h, 90m or 3600 (seconds), got {text!r}"
        ) from None
    return seconds
