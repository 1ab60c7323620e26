"""The seed's two examples, run on the embedded engine.

Run it with ``python -m examples.seed`` (or ``scripts/example``): it starts an engine on
``examples/seed.db``, sends one event to each function and prints what the runs returned.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import typing

import mainspring as inngest

inngest_client = inngest.Client(app_id="seed-example")
client = inngest_client


async def update_user(user_id: int) -> bool:
    await asyncio.sleep(0.01)  # stands in for a database write
    return True


async def send_email(user_id: int) -> str:
    await asyncio.sleep(0.01)  # stands in for an email API call
    return f"email sent to user {user_id}"


# "Running two steps in parallel"
@inngest_client.create_function(
    fn_id="my-function",
    trigger=inngest.TriggerEvent(event="my-event"),
)
async def fn(ctx: inngest.Context) -> list[object]:
    user_id = ctx.event.data["user_id"]

    (updated_user, sent_email) = await ctx.group.parallel(
        (
            lambda: ctx.step.run("update-user", update_user, user_id),
            lambda: ctx.step.run("send-email", send_email, user_id),
        )
    )
    return [updated_user, sent_email]


# "Dynamically building a tuple of parallel steps"
@client.create_function(
    fn_id="my-dynamic-function",
    trigger=inngest.TriggerEvent(event="my-dynamic-event"),
)
async def dynamic_fn(ctx: inngest.Context) -> list[bool]:
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
    return list(updated_users)


functions: list[inngest.Function[typing.Any]] = [fn, dynamic_fn]


async def main() -> None:
    database = pathlib.Path(__file__).with_name("seed.db")
    async with inngest.Engine(client, functions, database=database) as engine:
        events = [
            inngest.Event(name="my-event", data={"user_id": 42}),
            inngest.Event(name="my-dynamic-event", data={"user_ids": list(range(25))}),
        ]
        for event, event_id in zip(events, await engine.send(events), strict=True):
            for run in await engine.runs(event_id):
                done = await engine.wait(run.id, timeout=30)
                print(f"{event.name}: run {done.id} {done.status} -> {done.output}")


if __name__ == "__main__":
    asyncio.run(main())
