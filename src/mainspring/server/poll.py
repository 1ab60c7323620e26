"""Asking apps to sync, as the reference dev server does (``inngest dev -u URL``,
``--poll-interval`` in seconds, 5 by default, and ``--no-poll``).

The server sends a ``PUT`` to an app's serve URL; the app answers by syncing its functions
to the server (``POST /fn/register``). The ``-u`` URLs are asked until each has synced.
Then, unless polling is off, every app the server knows (the ``-u`` URLs and every app
that synced) is asked again every interval: an app that restarted with other functions
(a deploy) is synced without anyone asking, so the runs held for a function it brings back
resume (``engine/held.py``) and the functions it dropped are known to be gone. With
polling off, as with ``--no-poll``, an app that has synced is not asked again.

Each answer goes to the server's :class:`~.sync_status.SyncStatus` (the Apps page shows
it), a failure with the fix to try (:func:`ask_to_sync`, which the Resync button uses too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import httpx

from mainspring.server.kind_hints import is_kind_mismatch, kind_fix
from mainspring.server.sync_status import SyncProblem, SyncStatus

logger = logging.getLogger("mainspring.cli")

#: Seconds between two rounds of sync requests (the reference dev server's default).
DEFAULT_POLL_INTERVAL_S = 5.0
#: Seconds one sync request may take (the app registers with the server meanwhile).
SYNC_TIMEOUT_S = 10.0

#: The fixes to try, by what went wrong.
NOT_RUNNING_FIX = (
    "is the app running and serving at this URL? Start it, or check the URL's host, port "
    "and serve path (often /api/inngest)"
)
NOT_FOUND_FIX = "nothing serves the app at this path: check the serve path (often /api/inngest)"
SIGNING_FIX = (
    "the app's signing key is not this server's: give the app (INNGEST_SIGNING_KEY) the key "
    "given to mainspring start"
)
REGISTRATION_FIX = (
    "this server refused the app's registration: fix what the message names, then restart the app"
)
APP_FAILED_FIX = (
    "the app failed while syncing: see its logs; if it could not reach this server, set "
    "INNGEST_BASE_URL in its environment to this server's URL"
)


async def poll_apps(
    urls: Sequence[str],
    *,
    known: Callable[[], Iterable[str]] | None = None,
    interval: float = DEFAULT_POLL_INTERVAL_S,
    poll: bool = True,
    dev: bool = True,
    http: httpx.AsyncClient | None = None,
    status: SyncStatus | None = None,
) -> None:
    """Ask ``urls`` to sync until each has; with ``poll``, go on asking them and every URL
    ``known()`` lists (the synced apps') every ``interval`` seconds, until cancelled.
    Returns once every URL has synced when ``poll`` is off. Each answer is noted in
    ``status``."""
    if interval <= 0:
        raise ValueError(f"the poll interval must be positive, got {interval!r}")
    waiting = list(dict.fromkeys(urls))  # asked until they sync, polled or not
    if status is not None:
        status.expect(waiting)
    failing: set[str] = set()
    client = http if http is not None else httpx.AsyncClient(timeout=SYNC_TIMEOUT_S)
    try:
        while waiting or poll:
            polled = [*urls, *(known() if known is not None else ())] if poll else []
            targets = list(dict.fromkeys([*waiting, *polled]))
            for url in targets:
                problem = await ask_to_sync(client, url, dev=dev)
                if status is not None:
                    if problem is None:
                        status.synced(url)
                    else:
                        status.failed(url, problem, source="poll")
                if problem is None:
                    if url in waiting:
                        logger.info("app %s synced", url)
                        waiting.remove(url)
                    elif url in failing:
                        logger.info("app %s is back and synced", url)
                    failing.discard(url)
                elif url not in failing:
                    # Said once per outage: a polled app that is down is asked every round.
                    logger.warning("app %s did not sync: %s", url, problem)
                    failing.add(url)
            if waiting or poll:
                await asyncio.sleep(interval)
    finally:
        if http is None:
            await client.aclose()


async def ask_to_sync(http: httpx.AsyncClient, url: str, *, dev: bool) -> SyncProblem | None:
    """Ask the app at ``url`` to sync (a ``PUT``); what went wrong, with the fix to try,
    or None if it synced (its answer is its registration's)."""
    try:
        answer = await http.put(
            url, json={"url": url}, headers={"x-inngest-server-kind": "dev" if dev else "cloud"}
        )
    except httpx.TimeoutException as exc:
        return SyncProblem(f"no answer in time ({type(exc).__name__})", NOT_RUNNING_FIX)
    except httpx.HTTPError as exc:
        return SyncProblem(f"no answer: {exc or type(exc).__name__}", NOT_RUNNING_FIX)
    if answer.status_code == 200:
        return None
    text = answer.text[:500]
    return SyncProblem(
        f"{answer.status_code} {text}", fix_for(answer.status_code, text, answer.headers, dev=dev)
    )


def fix_for(status: int, body: str, headers: Mapping[str, str], *, dev: bool) -> str | None:
    """The fix to try for an app's refusal to sync (None: none is known)."""
    if is_kind_mismatch(status, body, headers, dev=dev):
        return kind_fix(dev=dev)
    if status in (401, 403):
        return SIGNING_FIX if not dev else None
    if status in (404, 405):
        return NOT_FOUND_FIX
    if status == 400 and '"error"' in body:
        # This server's refusal of the app's registration (its JSON), passed on by the app.
        return REGISTRATION_FIX
    if status >= 500:
        return APP_FAILED_FIX
    return None
