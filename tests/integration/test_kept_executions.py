"""Executions kept between calls, over HTTP: a run continues where its last call stopped;
a call another worker answers (or one that does not fit) replays from the request's memos
and gets the same results."""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import httpx
import pytest

import mainspring as inngest
from mainspring.sdk.serve.asgi import serve
from tests.conftest import log_calls, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


def fan_out(app_id: str, n: int) -> tuple[inngest.Client, inngest.Function[Any], list[str]]:
    """A group of n steps then one more; ``entries`` counts entries into the function body
    (each replay enters it again)."""
    client = inngest.Client(app_id=app_id, is_production=False)
    entries: list[str] = []

    async def square(i: int) -> int:
        return i * i

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> int:
        entries.append("enter")
        squares = await ctx.group.parallel(
            tuple(functools.partial(ctx.step.run, f"p{i}", square, i) for i in range(n))
        )
        return await ctx.step.run("sum", lambda: sum(squares))

    return client, fn, entries


class Alternating(httpx.AsyncBaseTransport):
    """Sends call after call to one app after another: two workers of one deployment."""

    def __init__(self, *apps: Any) -> None:
        self.transports = [httpx.ASGITransport(app=app) for app in apps]
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.transports[self.sent % len(self.transports)]
        self.sent += 1
        return await transport.handle_async_request(request)


async def run_over(
    tmp_path: pathlib.Path, client: inngest.Client, fn: inngest.Function[Any], *apps: Any
) -> tuple[inngest.Run, int]:
    router = Alternating(*apps)
    async with (
        httpx.AsyncClient(transport=router) as http,
        inngest.Engine(
            client,
            [fn],
            database=tmp_path / "kept.db",
            durability="normal",
            retry_backoff=0.01,
            app_url="http://app/api/inngest",
            http=http,
            # A call per planned step, so that a group's calls can meet other workers
            # (a plan run in one call is in test_parallel_plans.py).
            parallel_plans=False,
        ) as engine,
    ):
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    return run, len(log.calls)


async def test_one_worker_enters_the_function_once_for_a_whole_group(
    tmp_path: pathlib.Path,
) -> None:
    client, fn, entries = fan_out("kept-one", 20)
    run, calls = await run_over(tmp_path, client, fn, serve(client, [fn]))
    assert run.status == "Completed", run.error
    assert run.output == sum(i * i for i in range(20))
    assert calls == 22  # plan, 20 targeted calls, then the join (running "sum" and returning)
    assert entries == ["enter"]  # no call replayed the function


async def test_two_workers_replay_where_they_must_and_agree(tmp_path: pathlib.Path) -> None:
    client, fn, entries = fan_out("kept-two", 6)
    run, calls = await run_over(tmp_path, client, fn, serve(client, [fn]), serve(client, [fn]))
    assert run.status == "Completed", run.error
    assert run.output == sum(i * i for i in range(6))
    assert calls == 8
    # The second worker saw the run first at its first targeted call: it replayed once
    # then; the join went to a worker whose execution waits on the group and continued.
    assert len(entries) == 2
