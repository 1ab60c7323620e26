"""Which backend a ``database=`` names: a file path is SQLite, a ``postgresql://`` URL is
PostgreSQL. Anything else that looks like a URL is refused with its scheme named, never
taken as a path (it would quietly become a SQLite file in a folder named after it)."""

from __future__ import annotations

import os
import re
from typing import Literal

from mainspring.engine.clock import Clock
from mainspring.engine.store.contract import Store

Durability = Literal["full", "normal"]

#: A URL's scheme (``postgresql://``, ``sqlite://``): not a file path.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


class DatabaseLockedError(RuntimeError):
    """Another engine process holds this database."""


def is_postgres(database: str | os.PathLike[str]) -> bool:
    scheme = URL_SCHEME.match(os.fspath(database))
    return scheme is not None and scheme.group(1).lower() in POSTGRES_SCHEMES


def open_store(
    database: str | os.PathLike[str],
    *,
    durability: Durability,
    clock: Clock | None = None,
    lease_seconds: float | None = None,
) -> Store:
    """The store for ``database`` (not yet opened). ``clock`` and ``lease_seconds`` are for
    a store many processes share (PostgreSQL): the time of leases, and their length."""
    text = os.fspath(database)
    scheme = URL_SCHEME.match(text)
    if scheme is None:
        from mainspring.engine.store.sqlite import SQLiteStore

        return SQLiteStore(text, durability=durability)
    if scheme.group(1).lower() in POSTGRES_SCHEMES:
        # Imported here: psycopg is loaded only by engines that use it.
        from mainspring.engine.store.postgres.store import PostgresStore

        if lease_seconds is None:
            return PostgresStore(text, durability=durability, clock=clock)
        return PostgresStore(text, durability=durability, clock=clock, lease_seconds=lease_seconds)
    # The URL itself is not repeated: it may carry a password.
    raise ValueError(
        f"database={scheme.group(1)}://...: not a supported database; give a SQLite file "
        "path (such as 'mainspring.db') or a postgresql://user@host/dbname URL"
    )
