"""A unit undone with another unit of its transaction (``UnitUndoneError``: the database
reported the other's failure only after this one ran) is retried from the store, and
logged as what it is, without a traceback blaming the job."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import pytest

import mainspring as inngest
from mainspring.engine.store.contract import UnitUndoneError
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
