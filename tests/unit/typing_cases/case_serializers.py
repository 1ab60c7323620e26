"""``output_type=`` and pydantic models as users write them: the declared type comes back."""

from __future__ import annotations

from typing import reveal_type

import pydantic

import mainspring


class User(pydantic.BaseModel):
    id: int
    name: str = ""


class Tagged:
    """A serializer of one's own: anything with the two methods will do."""

    def serialize(self, obj: object, typ: object) -> object:
        return {"value": obj}

    def deserialize(self, obj: object, typ: object) -> object:
        return obj


client = mainspring.Client(app_id="typing-serializers", serializer=mainspring.PydanticSerializer())
custom = mainspring.Client(app_id="typing-serializers-custom", serializer=Tagged())
trigger = mainspring.TriggerEvent(event="typing/serializers")


async def load(user_id: int) -> User:
    return User(id=user_id)


async def load_many() -> list[User]:
    return [User(id=1)]


def load_sync(user_id: int) -> User:
    return User(id=user_id)


@client.create_function(fn_id="child", trigger=trigger, output_type=User)
async def child(ctx: mainspring.Context) -> User:
    return User(id=1)


reveal_type(child)  # expect: Function[User]


@client.create_function(fn_id="child-sync", trigger=trigger, output_type=list[User])
def child_sync(ctx: mainspring.ContextSync) -> list[User]:
    return [User(id=1)]


reveal_type(child_sync)  # expect: Function[list[User]]


@client.create_function(fn_id="steps", trigger=trigger)
async def steps(ctx: mainspring.Context) -> int:
    user = await ctx.step.run("load", load, 1, output_type=User)
    reveal_type(user)  # expect: User
    users = await ctx.step.run("many", load_many, output_type=list[User])
    reveal_type(users)  # expect: list[User]
    from_sync = await ctx.step.run("sync-handler", load_sync, 2, output_type=User)
    reveal_type(from_sync)  # expect: User
    plain = await ctx.step.run("plain", load, 3)
    reveal_type(plain)  # expect: User
    invoked = await ctx.step.invoke("invoke", function=child)
    reveal_type(invoked)  # expect: User
    by_id = await ctx.step.invoke_by_id("by-id", function_id="child", output_type=User)
    reveal_type(by_id)  # expect: User
    untyped = await ctx.step.invoke_by_id("untyped", function_id="child", data=user)
    reveal_type(untyped)  # expect: Any
    one, many = await ctx.group.parallel(
        (
            lambda: ctx.step.run("a", load, 4, output_type=User),
            lambda: ctx.step.run("b", load_many, output_type=list[User]),
        )
    )
    reveal_type(one)  # expect: User
    reveal_type(many)  # expect: list[User]
    event = mainspring.Event(name="typing/user.seen", data=user)
    reveal_type(event.data)  # expect: Mapping[str, Any]
    await ctx.step.send_event("send", event)
    return user.id + len(users)


@client.create_function(fn_id="steps-sync", trigger=trigger, output_type=User)
def steps_sync(ctx: mainspring.ContextSync) -> User:
    user = ctx.step.run("load", load_sync, 1, output_type=User)
    reveal_type(user)  # expect: User
    invoked = ctx.step.invoke("invoke", function=child_sync)
    reveal_type(invoked)  # expect: list[User]
    by_id = ctx.step.invoke_by_id("by-id", function_id="child", output_type=list[User])
    reveal_type(by_id)  # expect: list[User]
    return user


reveal_type(steps_sync)  # expect: Function[User]
