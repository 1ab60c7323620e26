"""Dynamically built groups (the seed's ``functools.partial`` form): a homogeneous tuple."""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable
from typing import reveal_type

import mainspring

client = mainspring.Client(app_id="typing-cases-dynamic")


async def update_user(user_id: str) -> bool:
    return bool(user_id)


def update_user_sync(user_id: str) -> bool:
    return bool(user_id)


@client.create_function(fn_id="my-function", trigger=mainspring.TriggerEvent(event="my-event"))
async def fn(ctx: mainspring.Context) -> None:
    parallel_steps = tuple[typing.Callable[[], typing.Awaitable[bool]]]()
    for user_id in ctx.event.data["user_ids"]:
        parallel_steps += tuple(
            [
                functools.partial(
                    ctx.step.run,
                    f"get-user-{user_id}",
                    functools.partial(update_user, user_id),
                )
            ]
        )

    updated_users = await ctx.group.parallel(parallel_steps)
    reveal_type(updated_users)  # expect: tuple[bool, ...]


@client.create_function(fn_id="from-ids", trigger=mainspring.TriggerEvent(event="my-event"))
async def from_ids(ctx: mainspring.Context) -> list[bool]:
    user_ids: list[str] = ["a", "b"]
    # The handler's argument goes into an inner partial, as in the seed: pyright cannot bind
    # a TypeVarTuple through functools.partial, so partial(ctx.step.run, id, handler, arg)
    # does not type-check there.
    group: tuple[Callable[[], Awaitable[bool]], ...] = tuple(
        functools.partial(ctx.step.run, f"update-{uid}", functools.partial(update_user, uid))
        for uid in user_ids
    )
    updated = await ctx.group.parallel(group, mainspring.ParallelMode.RACE)
    reveal_type(updated)  # expect: tuple[bool, ...]
    return list(updated)


@client.create_function(fn_id="sync-dynamic", trigger=mainspring.TriggerEvent(event="my-event"))
def sync_dynamic(ctx: mainspring.ContextSync) -> None:
    parallel_steps = tuple[typing.Callable[[], bool]]()
    for user_id in ["a", "b"]:
        parallel_steps += (
            functools.partial(
                ctx.step.run, f"get-user-{user_id}", functools.partial(update_user_sync, user_id)
            ),
        )
    updated_users = ctx.group.parallel(parallel_steps)
    reveal_type(updated_users)  # expect: tuple[bool, ...]
