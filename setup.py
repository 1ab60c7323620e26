"""The one compiled part of Mainspring: an optional SQLite VFS (engine/store/_walwrites.c).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built
(no C compiler, no sqlite3.h) the install goes on, and the SQLite store writes its WAL
through SQLite's own VFS (mainspring.engine.store.wal_writes says which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mainspring.engine.store._walwrites",
            sources=["src/mainspring/engine/store/_walwrites.c"],
            # The library Python's sqlite3 module is linked with on Linux distributions;
            # wal_writes.py checks at run time that it is the same one.
            libraries=["sqlite3"],
            optional=True,
        )
    ]
)
