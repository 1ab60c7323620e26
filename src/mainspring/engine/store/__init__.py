"""Durable state behind one small contract (:mod:`.contract`), with a SQLite backend."""
