"""Which VFS the SQLite store opens its write connection with.

``_walwrites`` (a C extension, built by ``setup.py`` where a compiler and ``sqlite3.h`` are
found) registers the VFS ``mainspring-wal``: SQLite's own, except that a WAL commit
reaches the kernel in one write instead of two per page (the C source says why and how
it stays safe). It is only useful if it is registered in the very SQLite library that
Python's ``sqlite3`` module runs on: a Python built with its own copy of SQLite would not
find it. :func:`coalescing_vfs` checks that once and answers the VFS's name, or ``None``
with :data:`unavailable_reason` saying why, so that the store opens its files as before.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sqlite3
from urllib.parse import quote

logger = logging.getLogger("mainspring.engine")

#: Why the coalescing VFS is not in use, when :func:`coalescing_vfs` is ``None``.
unavailable_reason = ""


@functools.cache
def coalescing_vfs() -> str | None:
    """The name of the VFS that writes each WAL commit at once, or ``None`` where it
    cannot be used (see :data:`unavailable_reason`)."""
    name = _find()
    if name is None:
        # Said once per process: SQLite files work the same, each commit only costs more.
        logger.info("SQLite WAL commits are written page by page: %s", unavailable_reason)
    return name


def _find() -> str | None:
    global unavailable_reason
    try:
        _walwrites = importlib.import_module("mainspring.engine.store._walwrites")
    except ImportError as error:
        unavailable_reason = f"the _walwrites extension was not built ({error})"
        return None
    try:
        name: str = _walwrites.register()
    except RuntimeError as error:  # no usable default VFS to wrap, or registration refused
        unavailable_reason = f"the VFS could not be registered ({error})"
        return None
    try:
        # Fails with "no such vfs" if sqlite3 runs on another copy of SQLite than ours.
        sqlite3.connect(f"file:probe?vfs={name}&mode=memory", uri=True).close()
    except sqlite3.OperationalError as error:
        unavailable_reason = f"Python's sqlite3 module does not see the VFS {name!r} ({error})"
        return None
    unavailable_reason = ""
    return name


def uri(path: str, vfs: str) -> str:
    """A ``file:`` URI for `path` opened through `vfs` (``sqlite3.connect(..., uri=True)``)."""
    # Percent-encode what a URI would take for its own syntax; "/" stays a path separator.
    return f"file:{quote(path, safe='/')}?vfs={vfs}"
