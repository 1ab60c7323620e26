"""The run page's HTML for long runs and batches, served in process (no browser: what the
browser tests of ``test_dashboard.py`` look at, checked here on sizes a browser test would
take too long to build): the window of steps and its links, a step's body fetched on
demand, and every event of a batch, including events sent with ids of their own."""

from __future__ import annotations

import contextlib
import html
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import mainspring
from mainspring.server.app import create_app
from mainspring.server.dashboard.run_page import EVENTS_SHOWN, STEP_WINDOW

STEPS = 230
BATCH = 60


def _functions() -> tuple[mainspring.Client, list[mainspring.Function[Any]]]:
    client = mainspring.Client(app_id="page")

    @client.create_function(fn_id="long", trigger=mainspring.TriggerEvent(event="long"))
    async def long(ctx: mainspring.Context) -> int:
        with contextlib.suppress(mainspring.StepError):
            await ctx.step.run("refuse", _refuse)
        for i in range(STEPS):
            await ctx.step.run(f"s{i}", _square, i)
        return STEPS

    @client.create_function(
        fn_id="batched",
        trigger=mainspring.TriggerEvent(event="b"),
        batch_events=mainspring.Batch(max_size=BATCH, timeout="60s"),
    )
    async def batched(ctx: mainspring.Context) -> int:
        return len(ctx.events)

    return client, [long, batched]


def _square(n: int) -> dict[str, int]:
    return {"n": n, "square": n * n}


def _refuse() -> None:
    raise mainspring.NonRetriableError("no")


class Page:
    def __init__(self, engine: mainspring.Engine, http: httpx.AsyncClient) -> None:
        self.engine = engine
        self.http = http

    async def get(self, path: str) -> str:
        answer = await self.http.get(path)
        assert answer.status_code == 200, answer.text[:500]
        return answer.text


@pytest.fixture
async def site(tmp_path: pathlib.Path) -> AsyncIterator[Page]:
    client, functions = _functions()
    engine = mainspring.Engine(client, functions, database=tmp_path / "page.db")
    app = create_app(engine, dev=True)
    async with engine:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            yield Page(engine, http)


async def _finished(engine: mainspring.Engine, event: mainspring.Event) -> str:
    [event_id] = await engine.send(event)
    [run] = await engine.runs(event_id)
    await engine.wait(run.id, timeout=60)
    return run.id


def _step_names(page: str) -> list[str]:
    return re.findall(r'<span class="step-name">([^<]*)</span>', page)


def _links(page: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(r'href="([^"]*)"', page)]


async def test_a_long_run_lists_the_latest_window_and_links_to_every_other(site: Page) -> None:
    run_id = await _finished(site.engine, mainspring.Event(name="long"))
    total = STEPS + 1
    page = await site.get(f"/runs/{run_id}")
    names = _step_names(page)
    assert names == [f"s{i}" for i in range(STEPS - STEP_WINDOW, STEPS)]
    assert f"Showing steps {total - STEP_WINDOW + 1}–{total} of {total} (the latest)." in page
    links = _links(page)
    assert f"/runs/{run_id}?from=0" in links
    assert f"/runs/{run_id}?from={total - 2 * STEP_WINDOW}" in links  # earlier
    assert f"/runs/{run_id}?steps=all" in links
    # The failed first step is out of the window: named, linked to the window showing it.
    assert "1 failed step not in this list" in page
    [note] = re.findall(r'<p class="failed-elsewhere".*?</p>', page, re.S)
    [refused] = _links(note)
    assert refused.startswith(f"/runs/{run_id}?from=0#step-")
    first = await site.get(refused.split("#")[0])
    assert _step_names(first) == ["refuse", *(f"s{i}" for i in range(STEP_WINDOW - 1))]
    assert f'id="{refused.split("#")[1]}"' in first
    # Every window, then all: each step is listed once.
    seen: list[str] = []
    for start in range(0, total, STEP_WINDOW):
        seen += _step_names(await site.get(f"/runs/{run_id}?from={start}"))
    assert seen == ["refuse", *(f"s{i}" for i in range(STEPS))]
    assert _step_names(await site.get(f"/runs/{run_id}?steps=all")) == seen
    # The live fragment lists the same window.
    fragment = await site.get(f"/runs/{run_id}?fragment=1")
    assert _step_names(fragment) == names
    assert "<html" not in fragment


async def test_the_timeline_links_each_bar_to_the_window_listing_its_step(site: Page) -> None:
    run_id = await _finished(site.engine, mainspring.Event(name="long"))
    page = await site.get(f"/runs/{run_id}")
    bars = re.findall(r'<a class="bar [^"]*" href="([^"]*)"', page)
    assert 1 < len(bars) < STEPS / 2  # neighbouring steps drawn as groups
    for href in map(html.unescape, bars):
        target = href.split("#")[1]
        listed = await site.get(href.split("#")[0]) if "?" in href else page
        assert f'id="{target}"' in listed, href


async def test_a_steps_output_is_fetched_when_opened(site: Page) -> None:
    run_id = await _finished(site.engine, mainspring.Event(name="long"))
    page = await site.get(f"/runs/{run_id}")
    assert '"square": ' not in html.unescape(page)  # not pretty-printed until asked for
    assert '{"n":229,"square":52441}' in html.unescape(page)  # its line's preview
    [body_url] = {
        html.unescape(url)
        for url in re.findall(r'data-body="([^"]*)"', page)
        if html.unescape(url).endswith(await _step_id(site, run_id, "s229"))
    }
    body = html.unescape(await site.get(body_url))
    assert '"square": 52441' in body
    assert "Attempt 1" in body
    missing = await site.http.get(f"/runs/{run_id}?fragment=1&step=nope")
    assert missing.status_code == 404


async def _step_id(site: Page, run_id: str, name: str) -> str:
    history = await site.engine.history(run_id)
    return next(entry.step_id for entry in history if entry.user_id == name)


async def test_a_batch_shows_its_events_up_to_a_cap_then_all_on_demand(site: Page) -> None:
    events = [
        # Half with ids of their own: the page still links each to its stored event.
        mainspring.Event(name="b", data={"n": n}, id=f"key-{n}" if n % 2 else "")
        for n in range(BATCH)
    ]
    internal_ids = await site.engine.send(events)
    [run] = await site.engine.runs(internal_ids[0])
    await site.engine.wait(run.id, timeout=60)
    page = await site.get(f"/runs/{run.id}")
    shown = re.findall(r'<a href="/events/([^"]+)" class="mono">b</a>', page)
    assert shown == internal_ids[:EVENTS_SHOWN]
    assert f"Showing the first {EVENTS_SHOWN} of {BATCH} events of the batch." in page
    assert f"/runs/{run.id}?events=all#events" in _links(page)
    every = await site.get(f"/runs/{run.id}?events=all")
    assert re.findall(r'<a href="/events/([^"]+)" class="mono">b</a>', every) == internal_ids
    assert '{"n":59}' in html.unescape(every)
    # A rerun has the same events: its page lists them too.
    rerun_id = await site.engine.rerun(run.id)
    await site.engine.wait(rerun_id, timeout=60)
    again = await site.get(f"/runs/{rerun_id}?events=all")
    assert re.findall(r'<a href="/events/([^"]+)" class="mono">b</a>', again) == internal_ids
    events_of, total = await site.engine.run_events(run.id, limit=3)
    assert ([e.internal_id for e in events_of], total) == (internal_ids[:3], BATCH)
    # A batch's stored events are text once appended to: a search reads them too.
    found = await site.engine.search_runs(expression="size(events) == 60 && event.data.n == 0")
    assert {found_run.id for found_run in found.runs} == {run.id, rerun_id}
