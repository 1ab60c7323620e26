"""Each app URL's syncs, for the person looking: when it last synced (registered), and when
and why its last attempt failed, with the fix to try.

One :class:`SyncStatus` per server, written by whoever sees a sync succeed or fail: the
poller asking apps to sync (:mod:`.poll`, ``-u`` URLs and every synced app), the Apps
page's Resync button, and the registration route (``POST /fn/register``: a sync, or a
refusal). It is read by the Apps page and ``GET /v1/apps`` (and through it by
``mainspring apps``).

It lives in memory only. It is observability, not state: no run, no route and no decision
depends on it, and the next round of the poller (every ``--poll-interval`` seconds in dev)
or the app's next registration rebuilds it. After a restart, an app served from its stored
registration shows no sync until it syncs again, which is true of this process.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

#: Who saw an attempt: the poller, the Apps page's Resync button, the registration route.
Source = Literal["poll", "resync", "register"]

#: The most URLs remembered: a registration is refused from whatever URL its body names,
#: so the oldest news is dropped past this many (a ``-u`` URL is always kept).
MAX_URLS: Final = 1000
#: The longest URL remembered (a longer one is not an app worth listing).
MAX_URL_CHARS: Final = 2048
#: Characters of a failure's message kept (an app's answer may be a whole HTML page).
MAX_MESSAGE_CHARS: Final = 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class SyncProblem:
    """Why an attempt to sync failed, and the fix to try (None: none is known)."""

    message: str
    fix: str | None = None

    def __str__(self) -> str:
        return self.message if self.fix is None else f"{self.message}; {self.fix}"


@dataclasses.dataclass(frozen=True, slots=True)
class SyncFailure:
    """A failed attempt: when (epoch milliseconds), why, and who saw it."""

    at: int
    problem: SyncProblem
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class AppSync:
    """What is known of one app URL's syncs since the server started."""

    url: str
    #: When it last synced (epoch milliseconds); None: not since the server started.
    synced_at: int | None = None
    #: The last failed attempt, kept after a later sync (then older than ``synced_at``).
    failure: SyncFailure | None = None
    #: Named with ``-u``: listed before its first attempt, and never forgotten.
    expected: bool = False

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (none succeeded since)."""
        if self.failure is None:
            return False
        return self.synced_at is None or self.failure.at >= self.synced_at

    def to_json(self) -> dict[str, Any]:
        """The fields ``GET /v1/apps`` adds to an app (see ``runs_openapi.py``)."""
        failure = self.failure
        return {
            "last_synced_at": self.synced_at,
            "last_sync_error": None
            if failure is None
            else {
                "at": failure.at,
                "message": failure.problem.message,
                "fix": failure.problem.fix,
                "source": failure.source,
            },
            "sync_failing": self.failing,
        }


class SyncStatus:
    """The last sync and the last failed attempt of each app URL (see the module)."""

    def __init__(self, now: Callable[[], int] = _wall_ms) -> None:
        self._now = now
        # Oldest news first: a dict keeps insertion order, and each write moves its URL last.
        self._syncs: dict[str, AppSync] = {}

    def expect(self, urls: Iterable[str]) -> None:
        """The ``-u`` URLs: listed (as never synced) before anything is known of them."""
        for url in urls:
            self._put(dataclasses.replace(self._get(url), expected=True))

    def synced(self, url: str) -> None:
        """``url`` synced just now."""
        self._put(dataclasses.replace(self._get(url), synced_at=self._now()))

    def failed(self, url: str, problem: SyncProblem, *, source: Source) -> None:
        """An attempt to sync ``url`` failed just now."""
        if len(problem.message) > MAX_MESSAGE_CHARS:
            problem = SyncProblem(problem.message[:MAX_MESSAGE_CHARS] + "…", problem.fix)
        failure = SyncFailure(self._now(), problem, source)
        self._put(dataclasses.replace(self._get(url), failure=failure))

    def forget(self, url: str) -> None:
        """The app at ``url`` was removed: its news goes, unless ``-u`` named it."""
        known = self._syncs.get(url)
        if known is not None and not known.expected:
            del self._syncs[url]

    def of(self, url: str) -> AppSync | None:
        return self._syncs.get(url)

    def all(self) -> list[AppSync]:
        """Every URL known, by URL."""
        return sorted(self._syncs.values(), key=lambda sync: sync.url)

    def _get(self, url: str) -> AppSync:
        return self._syncs.get(url) or AppSync(url)

    def _put(self, sync: AppSync) -> None:
        if not sync.url or len(sync.url) > MAX_URL_CHARS:
            return
        self._syncs.pop(sync.url, None)
        self._syncs[sync.url] = sync
        if len(self._syncs) > MAX_URLS:
            oldest = next((url for url, s in self._syncs.items() if not s.expected), None)
            if oldest is not None:
                del self._syncs[oldest]


def claimed_url(payload: Any) -> str | None:
    """The serve URL a registration body names, if it names one (a refused body may not)."""
    url = payload.get("url") if isinstance(payload, dict) else None
    return url if isinstance(url, str) and url else None
