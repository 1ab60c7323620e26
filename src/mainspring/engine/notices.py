"""Events that start nothing: a notice on the ``mainspring.events`` logger (INFO).

An event whose name no function's trigger names is accepted (the reference does the same),
yet a typo in a name otherwise fails in silence. The intake says so once per event name
per minute at most (a loop sending the same stray event writes one line a minute), and
``GET /v1/events/{id}`` carries the same reason (:func:`event_note`). Internal events
(``inngest/...``) are left out of the log: most of them have no listener by design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from mainspring.engine.clock import Clock
from mainspring.engine.records import StoredEvent

logger = logging.getLogger("mainspring.events")

#: The least time between two notices about the same event name.
NOTICE_EVERY_MS = 60_000
#: Names remembered at most; past this, those said over a minute ago are forgotten.
_REMEMBERED = 1024


class UnmatchedEvents:
    """Logs the events that started no function, at most once a minute per name."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        #: Event name -> when it was last said (epoch ms).
        self._said: dict[str, int] = {}

    def check(self, events: Sequence[StoredEvent], listens: Callable[[str], bool]) -> None:
        """Say which of ``events`` (just recorded) no function listens to."""
        if not logger.isEnabledFor(logging.INFO):
            return
        now: int | None = None
        for event in events:
            name = event.name
            if name.startswith("inngest/") or listens(name):
                continue
            now = self._clock.now_ms() if now is None else now
            last = self._said.get(name)
            if last is not None and now - last < NOTICE_EVERY_MS:
                continue
            if len(self._said) >= _REMEMBERED:
                self._said = {k: t for k, t in self._said.items() if now - t < NOTICE_EVERY_MS}
            self._said[name] = now
            logger.info(
                "event %r (%s) started nothing: %s",
                name,
                event.internal_id,
                no_function_note(name),
            )


def no_function_note(name: str) -> str:
    return f"no function is triggered by {name!r}"


def event_note(name: str, *, runs: int, listens: bool) -> str | None:
    """Why an event started no run, for its REST answer (None when it started some)."""
    if runs:
        return None
    if not listens:
        return no_function_note(name)
    return (
        f"it started no run: the functions triggered by {name!r} did not match it "
        "(their `if` expressions), or were synced after it"
    )
