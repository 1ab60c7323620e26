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
