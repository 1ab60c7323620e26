"""The coalescing VFS (engine/store/_walwrites.c): each WAL commit reaches the kernel in one
write, and nothing SQLite promises is lost on the way (visibility to other connections,
a process killed after its commit, big transactions, checkpoints).

Writes are counted with Linux's /proc/self/io (``syscw``: write system calls so far).
Without the extension built, these tests skip; under CI they fail, since CI builds it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainspring.engine.store import wal_writes
from mainspring.engine.store.sqlite import SQLiteStore

VFS = wal_writes.coalescing_vfs()

if VFS is None:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI builds the coalescing VFS, but {wal_writes.unavailable_reason}")
    pytest.skip(wal_writes.unavailable_reason, allow_module_level=True)

TABLES = 14  # about what a one-step run's commit touches (bench/README.md)


def write_calls() -> int:
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise AssertionError("/proc/self/io has no syscw line")


def connect(
    path: Path, *, vfs: str | None, synchronous: str = "full", **uri: str
) -> sqlite3.Connection:
    target = str(path) if vfs is None else wal_writes.uri(str(path), vfs)
    query = "".join(f"&{key}={value}" for key, value in uri.items())
    db = sqlite3.connect(target + query, uri=vfs is not None, isolation_level=None)
    db.execute("PRAGMA page_size=2048")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


def make_tables(db: sqlite3.Connection) -> None:
    for table in range(TABLES):
        db.execute(f"CREATE TABLE t{table} (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")


def commit_row_in_each_table(db: sqlite3.Connection, n: int) -> None:
    db.execute("BEGIN")
    for table in range(TABLES):
        db.execute(f"INSERT INTO t{table} VALUES (?, ?)", (f"{n:08d}", os.urandom(100)))
    db.execute("COMMIT")


def writes_of_each_commit(db: sqlite3.Connection, wal: Path) -> list[tuple[int, int]]:
    """(write calls, bytes added to the WAL) of 50 commits of a row in each table."""
    db.execute("PRAGMA wal_autocheckpoint=0")  # a checkpoint's writes are not the commit's
    make_tables(db)
    for n in range(20):  # past the schema's first commits
        commit_row_in_each_table(db, n)
    seen = []
    for n in range(20, 70):
        writes, size = write_calls(), wal.stat().st_size
        commit_row_in_each_table(db, n)
        seen.append((write_calls() - writes, wal.stat().st_size - size))
    return seen


def writes_per_commit(db: sqlite3.Connection, wal: Path) -> float:
    return sum(writes for writes, _ in writes_of_each_commit(db, wal)) / 50


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    # Every test here must find each commit's end by itself: the safety net (the WAL
    # index's barrier writing what is still gathered) firing means the rule missed one.
    from mainspring.engine.store import _walwrites

    before = _walwrites.unforeseen_flushes()
    yield tmp_path
    assert _walwrites.unforeseen_flushes() == before


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_a_commit_is_one_write_per_64_kib(files: Path, synchronous: str) -> None:
    plain = writes_per_commit(
        connect(files / "plain.db", vfs=None, synchronous=synchronous), files / "plain.db-wal"
    )
    # SQLite's own VFS: a header and a page per frame, at least one frame per table.
    assert plain >= 2 * TABLES
    # Ours: a commit's frames in one write, or in pieces of at most 64 KiB when a page
    # split makes the commit bigger.
    ours = connect(files / "ours.db", vfs=VFS, synchronous=synchronous)
    commits = writes_of_each_commit(ours, files / "ours.db-wal")
    for writes, size in commits:
        assert -(-size // (64 * 1024)) <= writes <= -(-size // (64 * 1024 - 2 * 2072)), commits
    assert sum(1 for writes, _ in commits if writes == 1) > 30, commits


def test_a_file_without_powersafe_overwrite_is_written_as_sqlite_writes_it(files: Path) -> None:
    # There SQLite pads commits to a sector and splits a frame around the sync: the rule
    # that finds a commit's end does not hold, so nothing is gathered.
    db = connect(files / "psow.db", vfs=VFS, psow="0")
    assert writes_per_commit(db, files / "psow.db-wal") >= 2 * TABLES
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_another_connection_sees_every_commit_at_once(files: Path, synchronous: str) -> None:
    path = files / "shared.db"
    writer = connect(path, vfs=VFS, synchronous=synchronous)
    # Small checkpoints: the WAL restarts from its start many times meanwhile.
    writer.execute("PRAGMA wal_autocheckpoint=50")
    make_tables(writer)
    reader = sqlite3.connect(path, isolation_level=None)
    for n in range(300):
        commit_row_in_each_table(writer, n)
        # Some commits are bigger, so that their frames overflow the gathering buffer.
        if n % 50 == 0:
            writer.execute("INSERT INTO t0 VALUES (?, ?)", (f"big{n}", os.urandom(200_000)))
        assert reader.execute("SELECT count(*) FROM t13").fetchone() == (n + 1,)
    assert reader.execute("SELECT count(*) FROM t0").fetchone() == (306,)
    assert writer.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_transaction_far_larger_than_the_buffer_commits_whole(files: Path) -> None:
    # 128 KiB and more in one write is what SQLite's unix VFS cannot take: the buffer
    # must hand over pieces well under it, whatever the transaction's size.
    path = files / "big.db"
    db = connect(path, vfs=VFS)
    db.execute("CREATE TABLE blobs (k INTEGER PRIMARY KEY, v BLOB)")
    payloads = [os.urandom(size) for size in (65_536, 131_072, 1_000_000, 3_000_000)]
    db.execute("BEGIN")
    for k, payload in enumerate(payloads):
        db.execute("INSERT INTO blobs VALUES (?, ?)", (k, payload))
    db.execute("COMMIT")
    db.close()
    again = sqlite3.connect(path)
    assert [row[0] for row in again.execute("SELECT v FROM blobs ORDER BY k")] == payloads
    assert again.execute("PRAGMA integrity_check").fetchone() == ("ok",)


CHILD = textwrap.dedent(
    """
    import sqlite3, sys
    from mainspring.engine.store import wal_writes
    vfs = wal_writes.coalescing_vfs()
    db = sqlite3.connect(wal_writes.uri(sys.argv[1], vfs), uri=True, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER PRIMARY KEY)")
    n = 0
    while True:
        db.execute("INSERT INTO done VALUES (?)", (n,))
        print(n, flush=True)
        n += 1
    """
)


@pytest.mark.slow
def test_a_process_killed_after_its_commit_keeps_it(files: Path) -> None:
    # synchronous=NORMAL promises a commit survives the process (not the machine): it must
    # be in the kernel's hands when the commit returns, not in our buffer.
    path = files / "killed.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    last = -1
    for line in child.stdout:
        last = int(line)
        if last >= 500:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    db = sqlite3.connect(path)
    (committed,) = db.execute("SELECT count(*) FROM done").fetchone()
    assert committed >= last + 1
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_the_store_writes_through_it(files: Path) -> None:
    store = SQLiteStore(files / "store.db")
    await store.open()
    try:
        assert store.wal_vfs == VFS
    finally:
        await store.close()


async def test_the_store_opens_on_sqlites_own_vfs_without_it(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_writes, "coalescing_vfs", lambda: None)
    store = SQLiteStore(files / "plain.db")
    await store.open()
    try:
        assert store.wal_vfs is None
    finally:
        await store.close()


def test_a_missing_extension_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "mainspring.engine.store._walwrites", None)
    wal_writes.coalescing_vfs.cache_clear()
    try:
        with caplog.at_level("INFO", logger="mainspring.engine"):
            assert wal_writes.coalescing_vfs() is None
        assert "_walwrites extension was not built" in wal_writes.unavailable_reason
        assert "written page by page: the _walwrites extension was not built" in caplog.text
    finally:
        monkeypatch.undo()
        wal_writes.coalescing_vfs.cache_clear()
        assert wal_writes.coalescing_vfs() == VFS


def test_a_path_that_looks_like_uri_syntax_is_opened_as_a_path(files: Path) -> None:
    path = files / "odd ?name#%.db"
    db = connect(path, vfs=VFS)
    db.execute("CREATE TABLE t (x)")
    db.close()
    assert path.exists()


def test_a_refused_registration_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        @staticmethod
        def register() -> str:
            raise RuntimeError("sqlite3_vfs_register failed: out of memory")

    monkeypatch.setitem(sys.modules, "mainspring.engine.store._walwrites", Refusing)
    wal_writes.coalescing_vfs.cache_clear()
    try:
        assert wal_writes.coalescing_vfs() is None
        assert wal_writes.unavailable_reason == (
            "the VFS could not be registered (sqlite3_vfs_register failed: out of memory)"
        )
    finally:
        monkeypatch.undo()
        wal_writes.coalescing_vfs.cache_clear()
        assert wal_writes.coalescing_vfs() == VFS
