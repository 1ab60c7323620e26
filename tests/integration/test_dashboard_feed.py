"""The dashboard's live feed (``server/dashboard/feed.py``): a page never misses a change
that happened between its render and the moment its stream joined the watcher.

A page is rendered, then opens its stream; a run that finishes in between is part of the
watcher's first look (its baseline), so only the catch-up message a stream gets once it
has joined makes the page fetch it. The browser tests hit this race under load; here it is
forced: the run finishes before the stream's first message is read.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import orjson
import pytest

import mainspring as inngest
from mainspring.server.dashboard.feed import RunFeed

# The feed's change signal differs: SQLite's data_version; on PostgreSQL, every look reads.
pytestmark = pytest.mark.backends("sqlite", "postgres")


def _hello(client: inngest.Client) -> inngest.Function[str]:
    @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="feed/hello"))
    async def hello(ctx: inngest.Context) -> str:
        return await ctx.step.run("greet", lambda: "hi")

    return hello


async def _next_message(stream: AsyncIterator[bytes]) -> dict[str, object]:
    while True:
        chunk = await asyncio.wait_for(anext(stream), 5.0)
        if chunk.startswith(b"event: runs"):
            message: dict[str, object] = orjson.loads(chunk.split(b"data: ", 1)[1])
            return message


async def test_a_stream_that_joins_after_a_change_is_told_to_fetch_again(
    db_path: pathlib.Path | str,
) -> None:
    client = inngest.Client(app_id="feed")
    async with inngest.Engine(client, [_hello(client)], database=db_path) as engine:
        feed = RunFeed(engine)
        stream = feed.stream(None)
        assert (await anext(stream)).startswith(b"retry:")  # connected; the page renders
        [event_id] = await engine.send(inngest.Event(name="feed/hello"))
        [run] = await engine.runs(event_id)
        await engine.wait(run.id, timeout=5)  # finished before the watcher's first look
        assert await _next_message(stream) == {"runs": []}  # the catch-up: fetch again
        await stream.aclose()


async def test_a_run_page_joining_late_is_told_to_fetch_its_run_again(
    db_path: pathlib.Path | str,
) -> None:
    client = inngest.Client(app_id="feed")
    async with inngest.Engine(client, [_hello(client)], database=db_path) as engine:
        [event_id] = await engine.send(inngest.Event(name="feed/hello"))
        [run] = await engine.runs(event_id)
        feed = RunFeed(engine)
        stream = feed.stream(run.id)
        await anext(stream)
        await engine.wait(run.id, timeout=5)
        assert await _next_message(stream) == {"runs": [run.id]}
        # Once caught up, a stream hears only of changes: a new run on a list page.
        listing = feed.stream(None)
        await anext(listing)
        caught_up = await _next_message(listing)  # the runs that moved since the last look
        assert set(caught_up["runs"]) <= {run.id}  # type: ignore[call-overload]
        [second] = await engine.send(inngest.Event(name="feed/hello"))
        [new_run] = await engine.runs(second)
        message = await _next_message(listing)
        assert new_run.id in message["runs"]  # type: ignore[operator]
        await stream.aclose()
        await listing.aclose()
