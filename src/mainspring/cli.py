"""The ``mainspring`` command.

    mainspring dev [MODULE:ATTR] [-u URL ...] [--host 127.0.0.1] [--port 8288] [--db FILE]
                   [--loop auto|asyncio|uvloop] [--http auto|h11|httptools]
    mainspring start --signing-key KEY [--signing-key-fallback KEY] --event-key KEY
                     [same options]

``dev`` starts the server (event API, registration, REST) with no keys; ``start`` requires
the event key on ``/e`` and the signing key (as a bearer token) on every other route, and
signs its calls to apps. During a key rotation the fallback key's bearer tokens are
accepted too. The keys default to ``INNGEST_SIGNING_KEY``, ``INNGEST_SIGNING_KEY_FALLBACK``
and ``INNGEST_EVENT_KEY``; they are checked before anything starts, and a malformed one
stops the command with exit code 2. ``MODULE:ATTR``
names a list of functions to run in the server's own process (their module's ``Client``
is used); ``-u URL`` names an app serving functions over HTTP, which the server asks to
sync (a ``PUT`` on its URL) once it is up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import uvicorn

from mainspring.engine.engine import Engine
from mainspring.protocol import signing
from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.server import keys
from mainspring.server.app import create_app

logger = logging.getLogger("mainspring.cli")

#: How often an app that has not synced yet is asked again.
PING_INTERVAL_S = 5.0


def load_functions(spec: str) -> tuple[Client, list[Function[Any]]]:
    """Import ``module:attr`` (a list of functions) and find the module's client."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"mainspring: expected MODULE:ATTR, got {spec!r}")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"mainspring: cannot import {module_name!r}: {exc}") from exc
    functions = getattr(module, attr, None)
    if not isinstance(functions, list | tuple) or not all(
        isinstance(fn, Function) for fn in functions
    ):
        raise SystemExit(f"mainspring: {spec!r} is not a list of mainspring functions")
    clients = [value for value in vars(module).values() if isinstance(value, Client)]
    if not clients:
        raise SystemExit(f"mainspring: module {module_name!r} defines no mainspring.Client")
    return clients[0], list(functions)


async def ping_apps(urls: Sequence[str], *, dev: bool = True) -> None:
    """Ask each app to sync (``PUT``) until it has, as the reference dev server does."""
    waiting = list(urls)
    async with httpx.AsyncClient(timeout=10.0) as http:
        while waiting:
            for url in list(waiting):
                try:
                    answer = await http.put(
                        url,
                        json={"url": url},
                        headers={"x-inngest-server-kind": "dev" if dev else "cloud"},
                    )
                except httpx.HTTPError as exc:
                    logger.warning("app %s did not answer the sync request: %s", url, exc)
                    continue
                if answer.status_code == 200:
                    logger.info("app %s synced", url)
                    waiting.remove(url)
                else:
                    logger.warning(
                        "app %s sync failed: %s %s", url, answer.status_code, answer.text
                    )
            if waiting:
                await asyncio.sleep(PING_INTERVAL_S)


def serve_engine(args: argparse.Namespace, *, dev: bool) -> None:
    if args.functions:
        client, functions = load_functions(args.functions)
    else:
        client, functions = Client(app_id="mainspring", is_production=not dev), []
    engine = Engine(
        client,
        functions,
        database=args.db,
        durability=args.durability,
        retry_backoff=args.retry_backoff,
        signing_key=None if dev else args.signing_key,
    )
    app = create_app(
        engine,
        dev=dev,
        event_keys=frozenset(getattr(args, "event_key", None) or ()),
        signing_key=None if dev else args.signing_key,
        signing_key_fallback=None if dev else args.signing_key_fallback,
        start_options={
            "host": args.host,
            "port": args.port,
            "sdkURLs": list(args.url or ()),
            "functions": args.functions,
            "database": str(args.db),
            "durability": args.durability,
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
            pinger = asyncio.create_task(ping_apps(args.url, dev=dev)) if args.url else None
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
        log_level=args.log_level,
        # "auto": uvloop and httptools (dependencies of ours) where they are installed, else
        # asyncio and h11; the options are there to rule one out.
        loop=args.loop,
        http=args.http,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mainspring", description="Durable functions.")
    commands = parser.add_subparsers(dest="command", required=True)
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
    args = parser.parse_args(argv)
    if args.command == "start":
        _check_keys(start_cmd, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve_engine(args, dev=args.command == "dev")
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
    dev_cmd.add_argument("--db", default="mainspring-dev.db", help="SQLite file")
    dev_cmd.add_argument("--durability", choices=["full", "normal"], default="normal")
    dev_cmd.add_argument(
        "--retry-backoff",
        type=float,
        default=None,
        help="seconds between retries (default: 15 s, 30 s, 1 m, ... with jitter)",
    )
    dev_cmd.add_argument("--log-level", default="warning")
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


if __name__ == "__main__":
    sys.exit(main())
