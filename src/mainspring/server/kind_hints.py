"""An app of the other kind: what to tell its developer.

An app served with ``Client(app_id=...)`` and no ``INNGEST_DEV`` is in cloud mode: it
refuses a dev server's sync (``server_kind_mismatch``, a 400) and expects signed calls. Each
side that meets it names the fix: the poller asking apps to sync (``server/poll.py``), the
registration route (``POST /fn/register`` with ``x-inngest-expected-server-kind``), and our
SDK's serve handler (``sdk/serve/handler.py`` has its own copy: the SDK never imports the
server).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request

from mainspring.protocol import headers as h

logger = logging.getLogger("mainspring.server")

#: Said when a cloud-mode app meets a dev server.
DEV_FIX = (
    "the app is in cloud mode and this is a dev server: set INNGEST_DEV=1 in the app's "
    "environment, or create its client with is_production=False "
    "(mainspring.Client(..., is_production=False) or inngest.Inngest(..., is_production=False))"
)
#: Said when a dev-mode app meets a server run with keys (``mainspring start``).
CLOUD_FIX = (
    "the app is in dev mode and this server is not (mainspring start): unset INNGEST_DEV in "
    "the app's environment, or create its client with is_production=True and its signing key"
)


def kind_fix(*, dev: bool) -> str:
    """The fix for an app of the other kind than a server in ``dev`` mode."""
    return DEV_FIX if dev else CLOUD_FIX


def is_kind_mismatch(
    status: int, body: str, answer_headers: Mapping[str, str], *, dev: bool
) -> bool:
    """Whether an app's answer to a sync request says it is of the other kind: its
    ``server_kind_mismatch`` error, or the server kind it expects in its headers."""
    if status < 400:
        return False
    if "server_kind_mismatch" in body:
        return True
    expected = answer_headers.get(h.EXPECTED_SERVER_KIND)
    ours = h.SERVER_KIND_DEV if dev else h.SERVER_KIND_CLOUD
    return bool(expected) and expected != ours


class KindMismatches:
    """Logs an app's refused registrations (``POST /fn/register`` expecting the other kind
    of server) once per app until it registers: the app retries, the log does not repeat.
    An app is known by its address and SDK headers here, before its body is read."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    @staticmethod
    def _key(request: Request) -> str:
        host = request.client.host if request.client is not None else "?"
        return f"{host} {request.headers.get('x-inngest-sdk', '')}"

    def say(self, request: Request, problem: str) -> None:
        key = self._key(request)
        if key in self._said:
            return
        if len(self._said) >= 1024:
            self._said.clear()
        self._said.add(key)
        logger.warning("an app at %s could not register: %s", key.split(" ")[0], problem)

    def over(self, request: Request) -> None:
        """The app registered: a later mismatch is a new outage."""
        self._said.discard(self._key(request))
