"""A fresh PostgreSQL database per test, for tests of the PostgreSQL backend.

The server is ``MAINSPRING_TEST_POSTGRES_URL`` (default: trust auth on
127.0.0.1:5432, user ``postgres``, database ``test``); each test gets a database of its own,
created from it and dropped afterwards, so tests never see each other's tables.

An unreachable server skips the test on a workstation, but fails it when ``CI`` is set: a
CI job whose PostgreSQL went missing must not pass by skipping every test that needs it.
"""

from __future__ import annotations

import os
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

ADMIN_URL_ENV = "MAINSPRING_TEST_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def unreachable(reason: str) -> NoReturn:
    message = f"PostgreSQL is unreachable ({ADMIN_URL_ENV} or {DEFAULT_ADMIN_URL}): {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database: yields its ``postgresql://`` URL and drops it on exit."""
    try:
        admin = psycopg.connect(admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unreachable(str(exc).strip())
    name = f"mainspring_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urllib.parse.urlsplit(admin_url())._replace(path=f"/{name}").geturl()
        finally:
            # FORCE: a connection a failed test left open must not keep the database.
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class TemplateDatabases:
    """Per-test databases cloned from one migrated template (``CREATE DATABASE ... TEMPLATE``
    copies the schema in tens of milliseconds; migrating each one would cost more).

    The template is made on first use and dropped, with every clone, by :meth:`close`.
    Clones are dropped in a background thread so a test does not wait for it.
    """

    def __init__(self) -> None:
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        self._template: str | None = None
        self._drops: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._admin is None:
            try:
                self._admin = psycopg.connect(admin_url(), autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as exc:
                unreachable(str(exc).strip())
        return self._admin

    def _url(self, name: str) -> str:
        return urllib.parse.urlsplit(admin_url())._replace(path=f"/{name}").geturl()

    @contextmanager
    def clone(self) -> Iterator[str]:
        """A new database with the current schema: yields its URL, drops it afterwards."""
        from mainspring.engine.store.postgres.migrate import migrate_url

        with self._lock:
            admin = self._connect()
            if self._template is None:
                name = f"mainspring_template_{secrets.token_hex(6)}"
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                migrate_url(self._url(name))
                self._template = name
            name = f"mainspring_test_{secrets.token_hex(6)}"
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self._template)
                )
            )
        try:
            yield self._url(name)
        finally:
            drop = threading.Thread(target=self._drop, args=(name,), daemon=True)
            drop.start()
            self._drops.append(drop)

    def _drop(self, name: str) -> None:
        with psycopg.connect(admin_url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        for drop in self._drops:
            drop.join(timeout=60)
        if self._template is not None:
            self._drop(self._template)
            self._template = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None


#: The test session's template and clones (tests/conftest.py closes it at the end).
TEMPLATES = TemplateDatabases()
