"""A unit undone with another unit of its transaction (``UnitUndoneError``: the database
reported the other's failure only after this one ran) is retried from the store, and
logged as what it is, without a traceback blaming the job."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import httpx
import pytest

import mainspring as inngest
from mainspring.engine.store.contract import UnitUndoneError
from mainspring.server.app import create_app
from tests.conftest import run_to_end


async def test_an_undone_unit_is_retried_and_logged_plainly(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = inngest.Client(app_id="undone")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="undone/go"))
    async def fn(ctx: inngest.Context) -> str:
        return await ctx.step.run("a", lambda: "done")

    async with inngest.Engine(
        client, [fn], database=tmp_path / "runs.db", durability="normal", retry_backoff=0.01
    ) as engine:
        store: Any = engine._store
        transact = store.transact
        undone: list[str] = []

        async def once_undone(unit: Any) -> Any:
            if not undone and "_record" in getattr(unit, "__qualname__", ""):
                undone.append(unit.__qualname__)
                raise UnitUndoneError("undone with unit 0 of its transaction, which failed")
            return await transact(unit)

        store.transact = once_undone
        with caplog.at_level(logging.INFO, logger="mainspring"):
            run = await run_to_end(engine, inngest.Event(name="undone/go"))
    assert (run.status, run.output) == (inngest.RunStatus.COMPLETED, "done")
    assert undone, "no job unit was undone"
    [record] = [r for r in caplog.records if "undone with unit 0" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None


async def test_an_undone_send_is_a_503_that_says_to_send_again(tmp_path: pathlib.Path) -> None:
    client = inngest.Client(app_id="undone")
    async with inngest.Engine(client, [], database=tmp_path / "runs.db") as engine:

        async def undone_send(*args: Any, **kwargs: Any) -> list[str]:
            raise UnitUndoneError("undone with unit 0 of its transaction, which failed")

        engine.send = undone_send  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=create_app(engine, dev=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            answer = await http.post("/e/key", json={"name": "undone/go", "data": {}})
    assert answer.status_code == 503
    body = answer.json()
    assert body["ids"] == []
    assert "not recorded" in body["error"]
    assert "send them again" in body["error"]
