"""Asking apps to sync, as the reference dev server does (``inngest dev -u URL``,
``--poll-interval`` in seconds, 5 by default, and ``--no-poll``).

The server sends a ``PUT`` to an app's serve URL; the app answers by syncing its functions
to the server (``POST /fn/register``). The ``-u`` URLs are asked until each has synced.
Then, unless polling is off, every app the server knows (the ``-u`` URLs and every app
that synced) is asked again every interval: an app that restarted with other functions
(a deploy) is synced without anyone asking, so the runs held for a function it brings back
resume (``engine/held.py``) and the functions it dropped are known to be gone. With
polling off, as with ``--no-poll``, an app that has synced is not asked again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

import httpx

from mainspring.server.kind_hints import is_kind_mismatch, kind_fix

logger = logging.getLogger("mainspring.cli")

#: Seconds between two rounds of sync requests (the reference dev server's default).
DEFAULT_POLL_INTERVAL_S = 5.0


async def poll_apps(
    urls: Sequence[str],
    *,
    known: Callable[[], Iterable[str]] | None = None,
    interval: float = DEFAULT_POLL_INTERVAL_S,
    poll: bool = True,
    dev: bool = True,
    http: httpx.AsyncClient | None = None,
) -> None:
    """Ask ``urls`` to sync until each has; with ``poll``, go on asking them and every URL
    ``known()`` lists (the synced apps') every ``interval`` seconds, until cancelled.
    Returns once every URL has synced when ``poll`` is off."""
    if interval <= 0:
        raise ValueError(f"the poll interval must be positive, got {interval!r}")
    waiting = list(dict.fromkeys(urls))  # asked until they sync, polled or not
    failing: set[str] = set()
    client = http if http is not None else httpx.AsyncClient(timeout=10.0)
    try:
        while waiting or poll:
            polled = [*urls, *(known() if known is not None else ())] if poll else []
            targets = list(dict.fromkeys([*waiting, *polled]))
            for url in targets:
                problem = await _ask(client, url, dev=dev)
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


async def _ask(http: httpx.AsyncClient, url: str, *, dev: bool) -> str | None:
    """Ask the app at ``url`` to sync; what went wrong, or None if it synced."""
    try:
        answer = await http.put(
            url, json={"url": url}, headers={"x-inngest-server-kind": "dev" if dev else "cloud"}
        )
    except httpx.HTTPError as exc:
        return f"no answer: {exc}"
    if answer.status_code != 200:
        problem = f"{answer.status_code} {answer.text[:500]}"
        if is_kind_mismatch(answer.status_code, answer.text, answer.headers, dev=dev):
            problem += f"; {kind_fix(dev=dev)}"
        return problem
    return None
