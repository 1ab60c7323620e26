"""Hashed step ids (protocol §4.1).

The wire id of a step is the lowercase hex SHA-1 of its user id; the n-th repeat of the
same user id within one execution (n >= 1) hashes ``"<id>:<n>"``. Language-independent
hashing lets a run move between SDKs mid-flight.
"""

from __future__ import annotations

import hashlib

#: The ``stepId`` query value meaning "no target: discover the next steps".
DISCOVERY_STEP_ID = "step"


def hash_step_id(user_id: str, index: int = 0) -> str:
    """Return the wire id of the ``index``-th occurrence of ``user_id``."""
    text = user_id if index == 0 else f"{user_id}:{index}"
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class StepIdCounter:
    """Counts repeats of user step ids within one execution."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, user_id: str) -> tuple[str, int]:
        """Return ``(hashed_id, index)`` for the next occurrence of ``user_id``."""
        index = self._seen.get(user_id, 0)
        self._seen[user_id] = index + 1
        return hash_step_id(user_id, index), index

    def forget(self, user_id: str) -> None:
        """Undo one ``next(user_id)``: used when a group re-invokes its branches."""
        index = self._seen[user_id] - 1
        if index:
            self._seen[user_id] = index
        else:
            del self._seen[user_id]
