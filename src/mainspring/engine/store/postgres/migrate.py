"""PostgreSQL schema migrations: numbered ``migrations/NNNN_name.sql`` files, applied in order.

Each file runs once, in its own transaction, which also records it in
``mainspring_migrations``: a file that fails leaves neither its changes nor its record.
Every such transaction first takes one transaction-level advisory lock with a fixed key, so
engine processes that start together against one database apply each version exactly once:
the others wait, then see it recorded. A database recorded at a version this code does not
know (written by a newer mainspring) is refused before anything is applied, since this
code would not understand the tables it would then use.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq

#: The table of applied versions.
MIGRATIONS_TABLE = "mainspring_migrations"
#: The advisory lock held while checking and applying a version: fixed, so that every
#: mainspring process agrees on it ("mainsprg" in ASCII, a positive 64-bit number).
LOCK_KEY = int.from_bytes(b"mainsprg", "big")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
)


class MigrationError(RuntimeError):
    """The database cannot be brought to this code's schema (see the message)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    folder = resources.files("mainspring.engine.store.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is not None:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    # A gap or a duplicate is a packaging mistake; applying around it would leave a
    # database that no version of the code describes.
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"the shipped migrations are not numbered 1, 2, ...: {versions}")
    return found


def migrate(
    conn: psycopg.Connection[Any], *, known: Sequence[Migration] | None = None
) -> list[int]:
    """Apply the migrations ``conn``'s database lacks; returns the versions applied here.

    ``conn`` must have no transaction open (each version commits on its own). ``known``
    replaces the shipped migrations (tests).
    """
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("migrate needs a connection with no transaction open")
    plan = list(migrations() if known is None else known)
    latest = plan[-1].version if plan else 0
    applied: list[int] = []
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            # Under the lock: two processes creating the table at once would otherwise
            # race on the catalog (CREATE ... IF NOT EXISTS is not safe against that).
            conn.execute(_CREATE_TABLE)
            recorded = _recorded(conn)
            unknown = sorted(version for version in recorded if version > latest)
            if unknown:
                raise MigrationError(
                    f"the database's schema is at version {max(recorded)}, newer than this "
                    f"mainspring knows (up to version {latest}): upgrade mainspring, or use "
                    "another database"
                )
            todo = [migration for migration in plan if migration.version not in recorded]
            if not todo:
                return applied
            step = todo[0]
            # The file's text as bytes: psycopg then sends it as one simple query, which
            # may hold several statements.
            conn.execute(step.sql.encode())
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) "
                "VALUES (%s, %s, now())",
                (step.version, step.name),
            )
        applied.append(step.version)


def migrate_url(url: str) -> list[int]:
    """:func:`migrate` on the database at ``url`` (``postgresql://...``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return migrate(conn)


def _recorded(conn: psycopg.Connection[Any]) -> set[int]:
    rows = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}").fetchall()
    return {int(row[0]) for row in rows}


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The highest version recorded (0 for a database never migrated)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
    if exists is None or not exists[0]:
        return 0
    row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}").fetchone()
    return 0 if row is None else int(row[0])


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None
    collation: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    """What a database's current schema holds, to compare two databases (tests)."""

    #: Table name to its columns, in declaration order.
    tables: dict[str, tuple[Column, ...]]
    #: Index name to its definition (``CREATE INDEX ... ON ... USING btree (...)``).
    indexes: dict[str, str]


def describe(
    conn: psycopg.Connection[Any], *, exclude: Sequence[str] = (MIGRATIONS_TABLE,)
) -> Schema:
    """The tables, columns and indexes of ``conn``'s current schema, leaving out the
    tables named in ``exclude`` (by default the runner's own) and their indexes."""
    tables: dict[str, list[Column]] = {}
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default, "
        "collation_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall()
    for table, name, data_type, nullable, default, collation in rows:
        if table not in exclude:
            column = Column(name, data_type, nullable == "YES", default, collation)
            tables.setdefault(table, []).append(column)
    indexes = {
        name: definition
        for table, name, definition in conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() ORDER BY indexname"
        ).fetchall()
        if table not in exclude
    }
    return Schema({table: tuple(columns) for table, columns in tables.items()}, indexes)
