"""Sending events while a test triggers a function: nothing leaves the process.

A function under test usually sends with the app's *real* client (a module-level
``client.send_sync(...)``), not with the mock client handed to ``trigger``; the reference's
``mocked`` lets that send reach the network. Here, while :func:`capture_sends` is active,
every ``Client.send`` / ``send_sync`` made from the run's context (its function body, its
step handlers, the threads of a sync function) is answered with fake ids and recorded.

The real client cannot be swapped out (``trigger`` is never given it), so the interception
is the SDK's own: a context variable every client's send reads (``SEND_INTERCEPT``), set
only around the run. The client's middleware still sees the events first. Code outside a
trigger sends as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Final

from mainspring.sdk.client import SEND_INTERCEPT
from mainspring.sdk.event import Event

#: The id every faked send returns, one per event (the reference's value).
FAKE_EVENT_ID: Final = "0" * 26


class SentEvents:
    """The events sent while one trigger ran, in the order they were sent."""

    def __init__(self) -> None:
        self.events: list[Event] = []


_ACTIVE: contextvars.ContextVar[SentEvents | None] = contextvars.ContextVar(
    "mainspring_testing_sends", default=None
)


def fake_send(events: Event | Sequence[Event]) -> list[str]:
    """Record ``events`` with the active capture, if any; one fake id per event."""
    # A single Event is one event (the reference iterated its pydantic fields: 4 ids).
    batch = [events] if isinstance(events, Event) else list(events)
    active = _ACTIVE.get()
    if active is not None:
        active.events.extend(batch)
    return [FAKE_EVENT_ID for _ in batch]


@contextlib.contextmanager
def capture_sends() -> Iterator[SentEvents]:
    """Fake and record every send made from this context until the block ends."""
    sent = SentEvents()
    token = _ACTIVE.set(sent)
    intercepting = SEND_INTERCEPT.set(fake_send)
    try:
        yield sent
    finally:
        SEND_INTERCEPT.reset(intercepting)
        _ACTIVE.reset(token)
