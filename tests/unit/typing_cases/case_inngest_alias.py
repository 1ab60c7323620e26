"""Code written for the reference SDK, spelled ``import mainspring as inngest``."""

from __future__ import annotations

from typing import reveal_type

import mainspring as inngest

inngest_client = inngest.Inngest(app_id="my-app")


async def update_user(user_id: str) -> dict[str, str]:
    return {"user_id": user_id}


async def send_email(user_id: str) -> bool:
    return bool(user_id)


@inngest_client.create_function(
    fn_id="my-function",
    trigger=inngest.TriggerEvent(event="my-event"),
)
async def fn(ctx: inngest.Context) -> None:
    user_id = ctx.event.data["user_id"]

    (updated_user, sent_email) = await ctx.group.parallel(
        (
            lambda: ctx.step.run("update-user", update_user, user_id),
            lambda: ctx.step.run("send-email", send_email, user_id),
        )
    )
    reveal_type(updated_user)  # expect: dict[str, str]
    reveal_type(sent_email)  # expect: bool

    raced = await ctx.group.parallel(
        (
            lambda: ctx.step.run("a", update_user, "a"),
            lambda: ctx.step.run("b", send_email, "b"),
            lambda: ctx.step.sleep("c", 1000),
        ),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    reveal_type(raced)  # expect: tuple[dict[str, str], bool, None]


@inngest_client.create_function(fn_id="sync-function", trigger=inngest.TriggerEvent(event="e"))
def sync_fn(ctx: inngest.ContextSync) -> bool:
    email, user = ctx.group.parallel(
        (
            lambda: ctx.step.run("send-email", lambda: True),
            lambda: ctx.step.run("user", lambda: {"user_id": "1"}),
        )
    )
    reveal_type(email)  # expect: bool
    reveal_type(user)  # expect: dict[str, str]
    return email


reveal_type(inngest_client)  # expect: Client
reveal_type(fn)  # expect: Function[None]
reveal_type(sync_fn)  # expect: Function[bool]
