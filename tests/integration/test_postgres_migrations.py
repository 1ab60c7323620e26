"""PostgreSQL schema migrations (engine/store/postgres/migrate.py) against a real server.

Each test runs on a database of its own (tests/postgres_support.py); without a server the
tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from importlib import resources

import psycopg
import pytest

from mainspring import cli
from mainspring.engine.store.postgres import migrate
from mainspring.engine.store.sqlite import _migrate as sqlite_migrate
from tests.postgres_support import fresh_database


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


#: The versions shipped, all applied to an empty database.
SHIPPED = [1, 2]
#: Tables only the PostgreSQL schema has (what SQLite's store keeps in memory, because it
#: alone writes its file): the match paths of pauses, which other processes add to.
POSTGRES_ONLY = {"pause_paths"}


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


def shipped_sql() -> str:
    return "\n".join(step.sql for step in migrate.migrations())


def test_migrating_an_empty_database_gives_the_declared_schema(database: str) -> None:
    with connect(database) as conn:
        assert migrate.migrate(conn) == SHIPPED
        migrated = migrate.describe(conn)
        rows = conn.execute("SELECT version, name FROM mainspring_migrations").fetchall()
    assert rows == [(1, "initial"), (2, "shared_processes")]
    # The same files run straight into another database: the runner adds nothing but its
    # own table, and leaves nothing out.
    with fresh_database() as other, connect(other) as conn:
        conn.execute(shipped_sql().encode())
        declared = migrate.describe(conn)
    assert migrated == declared
    assert "jobs_due" in migrated.indexes
    jobs = {column.name: column for column in migrated.tables["jobs"]}
    assert jobs["lease_owner"].nullable
    assert jobs["lease_until"].type == "bigint"


def sqlite_schema() -> sqlite3.Connection:
    """SQLite's schema as an engine opening an old file ends up with: schema.sql, then
    the ALTERs of _migrate (which must then find nothing to add)."""
    db = sqlite3.connect(":memory:")
    schema = resources.files("mainspring.engine.store").joinpath("sql/schema.sql").read_text()
    db.executescript(schema)
    sqlite_migrate(db)
    return db


#: SQLite's declared types and the PostgreSQL types that may stand for them.
TYPES = {"TEXT": {"text"}, "BLOB": {"bytea"}, "INTEGER": {"bigint", "integer", "boolean"}}


def index_columns(definition: str) -> list[str]:
    match = re.search(r"\(([^)]*)\)$", definition)
    assert match is not None, definition
    return [name.strip() for name in match.group(1).split(",")]


def test_every_sqlite_table_column_and_index_has_its_postgres_counterpart(database: str) -> None:
    with connect(database) as conn:
        migrate.migrate(conn)
        pg = migrate.describe(conn)
    lite = sqlite_schema()
    tables = [row[0] for row in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert set(pg.tables) == set(tables) | POSTGRES_ONLY
    for table in tables:
        info = lite.execute(f"PRAGMA table_info({table})").fetchall()
        columns = pg.tables[table]
        assert [column.name for column in columns] == [row[1] for row in info], table
        for (_, name, kind, notnull, default, pk), column in zip(info, columns, strict=True):
            where = f"{table}.{name}"
            assert column.type in TYPES[kind], where
            # WITHOUT ROWID tables keep NULL out of their primary key, declared or not.
            assert column.nullable == (not notnull and not pk), where
            if default is None:
                assert column.default is None, where
            else:
                # PostgreSQL spells a default with its cast: '-1'::integer.
                value = re.sub(r"::[a-z ]+$", "", column.default or "").strip("'")
                assert value in {default, "false" if default == "0" else None}, where
            if kind == "TEXT":
                assert column.collation == "C", where  # SQLite compares bytes
        keys = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
        assert index_columns(pg.indexes[f"{table}_pkey"]) == keys, table
        for _, index, unique, origin, _ in lite.execute(f"PRAGMA index_list({table})"):
            if origin == "pk":
                continue
            names = [row[2] for row in lite.execute(f"PRAGMA index_info({index})")]
            # SQLite names a UNIQUE column's index itself; ours is named after the column.
            counterpart = f"{table}_{names[0]}" if origin == "u" else index
            definition = pg.indexes[counterpart]
            assert index_columns(definition) == names, index
            assert ("UNIQUE" in definition) == bool(unique), index


def test_migrating_twice_applies_nothing_the_second_time(database: str) -> None:
    with connect(database) as conn:
        assert migrate.migrate(conn) == SHIPPED
        assert migrate.migrate(conn) == []
        assert migrate.current_version(conn) == SHIPPED[-1]
        count = conn.execute("SELECT count(*) FROM mainspring_migrations").fetchone()
    assert count == (len(SHIPPED),)


def test_concurrent_migrations_apply_each_version_once(database: str) -> None:
    starters = 6
    barrier = threading.Barrier(starters)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with connect(database) as conn:
                barrier.wait()
                results.append(migrate.migrate(conn))
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # Each version was applied by exactly one of them (maybe not the same one).
    applied = sorted(version for versions in results for version in versions)
    assert len(results) == starters
    assert applied == SHIPPED
    with connect(database) as conn:
        rows = conn.execute("SELECT version FROM mainspring_migrations ORDER BY 1").fetchall()
    assert rows == [(version,) for version in SHIPPED]


def test_a_failing_migration_leaves_neither_changes_nor_record(database: str) -> None:
    broken = migrate.Migration(3, "broken", "CREATE TABLE half_done (a INT); SELECT 1/0;")
    with connect(database) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate.migrate(conn, known=[*migrate.migrations(), broken])
        # Versions 1 and 2 committed on their own before 3 failed.
        assert migrate.current_version(conn) == 2
        exists = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert exists == (None,)


def test_a_database_newer_than_the_code_is_refused(database: str) -> None:
    with connect(database) as conn:
        migrate.migrate(conn)
        conn.execute("INSERT INTO mainspring_migrations VALUES (7, 'future', now())")
        with pytest.raises(migrate.MigrationError) as refused:
            migrate.migrate(conn)
    assert "at version 7" in str(refused.value)
    assert "up to version 2" in str(refused.value)


def test_a_newer_database_is_refused_before_anything_is_applied(database: str) -> None:
    with connect(database) as conn:
        conn.execute(
            "CREATE TABLE mainspring_migrations (version INTEGER PRIMARY KEY, name TEXT, "
            "applied_at TIMESTAMPTZ)"
        )
        conn.execute("INSERT INTO mainspring_migrations VALUES (3, 'future', now())")
        with pytest.raises(migrate.MigrationError, match="at version 3"):
            migrate.migrate(conn)
        assert conn.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def test_the_migrate_command(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["migrate", "--database", database]) == 0
    assert capsys.readouterr().out == "applied 0001_initial\napplied 0002_shared_processes\n"
    monkeypatch.setenv("MAINSPRING_DATABASE_URL", database)
    assert cli.main(["migrate"]) == 0
    assert capsys.readouterr().out == "the database is up to date (schema version 2)\n"
    with connect(database) as conn:
        conn.execute("INSERT INTO mainspring_migrations VALUES (9, 'future', now())")
    assert cli.main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "at version 9" in err
    assert "up to version 2" in err


def test_the_migrate_command_on_a_sqlite_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "--db", "mainspring.db"]) == 0
    assert "SQLite files migrate themselves" in capsys.readouterr().out


def test_the_migrate_command_without_a_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAINSPRING_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["migrate"])
    assert stopped.value.code == 2
    assert "MAINSPRING_DATABASE_URL" in capsys.readouterr().err


def test_the_migrate_command_names_an_unreachable_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["migrate", "--database", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "cannot reach the database" in capsys.readouterr().err
