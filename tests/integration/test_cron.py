"""Cron triggers under a manual clock."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

import mainspring as inngest

pytestmark = pytest.mark.backends("sqlite", "postgres")

# 2026-01-01T00:00:30Z: thirty seconds into a minute.
START = 1_767_225_630_000


def build(ticks: list[str]) -> tuple[inngest.Client, list[inngest.Function[None]]]:
    client = inngest.Client(app_id="cron")

    @client.create_function(fn_id="every-minute", trigger=inngest.TriggerCron(cron="* * * * *"))
    async def every_minute(ctx: inngest.Context) -> None:
        ticks.append(str(ctx.event.data["scheduledAt"]))

    return client, [every_minute]


async def settle() -> None:
    """Give the engine a moment (for checks that nothing more happens)."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def until_ticks(ticks: list[str], count: int) -> None:
    for _ in range(500):
        if len(ticks) >= count:
            await settle()
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} ticks, got {ticks}")


async def test_fires_once_per_minute_and_not_again_after_a_restart(db_path: pathlib.Path) -> None:
    ticks: list[str] = []
    clock = inngest.ManualClock(START)
    client, functions = build(ticks)
    async with inngest.Engine(
        client, functions, database=db_path, clock=clock, durability="normal"
    ):
        await settle()
        assert ticks == []
        clock.advance(30)  # 00:01:00
        await until_ticks(ticks, 1)
        clock.advance(60)  # 00:02:00
        await until_ticks(ticks, 2)
        clock.advance(10)  # 00:02:10
        await settle()
    assert ticks == ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]
    # A new engine on the same file, still inside minute 2: no second 00:02 tick.
    client2, functions2 = build(ticks)
    async with inngest.Engine(
        client2, functions2, database=db_path, clock=clock, durability="normal"
    ):
        await settle()
        clock.advance(20)  # 00:02:30
        await settle()
        assert ticks == ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]
        clock.advance(30)  # 00:03:00
        await until_ticks(ticks, 3)
    assert ticks == ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z", "2026-01-01T00:03:00Z"]


async def test_ticks_missed_while_stopped_fire_once(db_path: pathlib.Path) -> None:
    ticks: list[str] = []
    clock = inngest.ManualClock(START)
    client, functions = build(ticks)
    async with inngest.Engine(
        client, functions, database=db_path, clock=clock, durability="normal"
    ):
        await settle()
    clock.advance(10 * 60)  # ten minutes pass with no engine running
    client2, functions2 = build(ticks)
    async with inngest.Engine(
        client2, functions2, database=db_path, clock=clock, durability="normal"
    ):
        await until_ticks(ticks, 1)
        assert ticks == ["2026-01-01T00:01:00Z"]  # the missed tick, once
        clock.advance(60)
        await until_ticks(ticks, 2)
    assert len(ticks) == 2
    assert ticks[1] == "2026-01-01T00:11:00Z"


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "out of range"),
        ("@daily", "expected 5 fields"),
        ("TZ=Nowhere/City * * * * *", "unknown time zone"),
    ],
)
def test_invalid_cron_fails_at_definition(cron: str, problem: str) -> None:
    with pytest.raises(inngest.FunctionConfigInvalidError, match=problem) as info:
        inngest.TriggerCron(cron=cron)
    assert cron in str(info.value)
