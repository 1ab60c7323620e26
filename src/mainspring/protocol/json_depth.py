"""How deeply a JSON value nests (objects and arrays), checked without recursion.

orjson writes at most 254 levels back out: a value stored deeper could never be answered
again. Limits well under that are checked here before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def nests_deeper(value: Any, limit: int, encoded: bytes | bytearray | None = None) -> bool:
    """Whether ``value`` has more than ``limit`` levels of objects and arrays (the
    outermost is level 1).

    Iterative, and it stops at the limit, so a cyclic value ends too. ``encoded``, the
    value as JSON, lets the common case skip the walk: a value whose text has no more
    brackets than ``limit`` cannot nest deeper.
    """
    if encoded is not None and encoded.count(b"{") + encoded.count(b"[") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, Mapping):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, Mapping | list | tuple):
                stack.append((child, depth + 1))
    return False
