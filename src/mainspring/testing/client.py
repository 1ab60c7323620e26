"""The mock client: a :class:`~mainspring.Client` whose sends never leave the process."""

from __future__ import annotations

from collections.abc import Sequence

from mainspring.sdk.client import Client
from mainspring.sdk.event import Event
from mainspring.testing.sending import fake_send


class Inngest(Client):
    """A client for tests (the reference's ``mocked.Inngest``).

    ``send`` and ``send_sync`` return one fake id per event (``"0" * 26``) and reach no
    server or engine; inside :func:`~mainspring.testing.trigger` the events are also
    recorded in the result's ``sent_events``.
    """

    async def send(
        self, events: Event | Sequence[Event], *, skip_middleware: bool = False
    ) -> list[str]:
        return fake_send(events)

    def send_sync(
        self, events: Event | Sequence[Event], *, skip_middleware: bool = False
    ) -> list[str]:
        return fake_send(events)
