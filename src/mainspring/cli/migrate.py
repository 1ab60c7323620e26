"""``mainspring migrate``: bring a PostgreSQL database to this version's schema.

    mainspring migrate [--database postgresql://...]     (or MAINSPRING_DATABASE_URL)

It applies the numbered migrations the database lacks (as an engine will at start) and
prints them, or says the database is up to date. SQLite files need no command: the engine
migrates them when it opens them. psycopg is imported only here, when the command runs, so
that the CLI's start stays light (tests/unit/test_import_cost.py).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

#: Where the URL comes from when --database is not given.
DATABASE_ENV = "MAINSPRING_DATABASE_URL"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def add_migrate_command(commands: Any) -> None:
    """The ``migrate`` subcommand on ``commands`` (argparse subparsers)."""
    text = "apply the PostgreSQL schema migrations a database lacks"
    cmd = commands.add_parser("migrate", help=text, description=text)
    cmd.add_argument(
        "--database",
        "--db",
        dest="database",
        metavar="URL",
        help=f"postgresql://user@host/db ({DATABASE_ENV})",
    )
    cmd.set_defaults(migrate_parser=cmd)


def run_migrate(args: argparse.Namespace) -> int:
    """Run ``mainspring migrate``: 0 when the database is at the code's version."""
    parser: argparse.ArgumentParser = args.migrate_parser
    database = args.database or os.environ.get(DATABASE_ENV)
    if not database:
        parser.error(f"give --database postgresql://... or set {DATABASE_ENV}")
    scheme = _SCHEME.match(database)
    if scheme is None:
        print(
            f"{database}: SQLite files migrate themselves when the engine opens them; "
            "`mainspring migrate` is for PostgreSQL databases (postgresql://...)"
        )
        return 0
    if scheme.group(1).lower() not in ("postgresql", "postgres"):
        # The URL is not echoed: it may carry a password.
        parser.error(f"{scheme.group(1)}://...: only postgresql:// databases are supported")

    import psycopg

    from mainspring.engine.store.postgres import migrate

    try:
        with psycopg.connect(database, autocommit=True, connect_timeout=10) as conn:
            applied = migrate.migrate(conn)
            version = migrate.current_version(conn)
    except psycopg.OperationalError as exc:
        print(f"mainspring: error: cannot reach the database: {exc}".rstrip(), file=sys.stderr)
        return 1
    except migrate.MigrationError as exc:
        print(f"mainspring: error: {exc}", file=sys.stderr)
        return 1
    names = {step.version: step.name for step in migrate.migrations()}
    for number in applied:
        print(f"applied {number:04d}_{names[number]}")
    if not applied:
        print(f"the database is up to date (schema version {version})")
    return 0
