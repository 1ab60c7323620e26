"""``group.parallel`` in async functions: each tuple element keeps its own type."""

from __future__ import annotations

from typing import reveal_type

import mainspring

client = mainspring.Client(app_id="typing-cases")


async def get_int() -> int:
    return 1


async def get_str() -> str:
    return "one"


async def get_user(user_id: int) -> dict[str, str]:
    return {"id": str(user_id)}


async def add(a: int, b: float, *, label: str = "") -> float:
    return a + b


async def maybe_name() -> str | None:
    return None


async def nothing() -> None:
    return None


def sync_bytes_len() -> int:
    return 3


def sync_flag(value: str) -> bool:
    return bool(value)


@client.create_function(fn_id="pairs", trigger=mainspring.TriggerEvent(event="typing/pairs"))
async def pairs(ctx: mainspring.Context) -> None:
    a, b = await ctx.group.parallel(
        (lambda: ctx.step.run("a", get_int), lambda: ctx.step.run("b", get_str))
    )
    reveal_type(a)  # expect: int
    reveal_type(b)  # expect: str

    pair = await ctx.group.parallel(
        (lambda: ctx.step.run("c", get_int), lambda: ctx.step.run("d", get_str))
    )
    reveal_type(pair)  # expect: tuple[int, str]

    (only,) = await ctx.group.parallel((lambda: ctx.step.run("e", maybe_name),))
    reveal_type(only)  # expect: str | None


@client.create_function(fn_id="triples", trigger=mainspring.TriggerEvent(event="typing/3"))
async def triples(ctx: mainspring.Context) -> str:
    user, total, flag = await ctx.group.parallel(
        (
            lambda: ctx.step.run("user", get_user, 7),
            lambda: ctx.step.run("total", add, 1, 2.5),
            lambda: ctx.step.run("flag", sync_flag, "yes"),
        )
    )
    reveal_type(user)  # expect: dict[str, str]
    reveal_type(total)  # expect: float
    reveal_type(flag)  # expect: bool
    return user["id"]


@client.create_function(fn_id="fives", trigger=mainspring.TriggerEvent(event="typing/5"))
async def fives(ctx: mainspring.Context) -> int:
    results = await ctx.group.parallel(
        (
            lambda: ctx.step.run("one", get_int),
            lambda: ctx.step.run("two", get_str),
            lambda: ctx.step.run("three", nothing),
            lambda: ctx.step.run("four", sync_bytes_len),
            lambda: ctx.step.run("five", lambda: [1.5, 2.5]),
        ),
        parallel_mode=mainspring.ParallelMode.RACE,
    )
    reveal_type(results)  # expect: tuple[int, str, None, int, list[float]]
    one, two, three, four, five = results
    reveal_type(one)  # expect: int
    reveal_type(two)  # expect: str
    reveal_type(three)  # expect: None
    reveal_type(four)  # expect: int
    reveal_type(five)  # expect: list[float]
    return one + four


@client.create_function(fn_id="nested", trigger=mainspring.TriggerEvent(event="typing/nest"))
async def nested(ctx: mainspring.Context) -> tuple[int, tuple[str, bool]]:
    outer = await ctx.group.parallel(
        (
            lambda: ctx.step.run("n1", get_int),
            lambda: ctx.group.parallel(
                (
                    lambda: ctx.step.run("n2", get_str),
                    lambda: ctx.step.run("n3", sync_flag, "x"),
                )
            ),
        )
    )
    reveal_type(outer)  # expect: tuple[int, tuple[str, bool]]
    return outer


@client.create_function(fn_id="many", trigger=mainspring.TriggerEvent(event="typing/13"))
async def many(ctx: mainspring.Context) -> None:
    # Past the 12 typed overloads the result is a homogeneous tuple.
    thirteen = await ctx.group.parallel(
        (
            lambda: ctx.step.run("m1", get_int),
            lambda: ctx.step.run("m2", get_int),
            lambda: ctx.step.run("m3", get_int),
            lambda: ctx.step.run("m4", get_int),
            lambda: ctx.step.run("m5", get_int),
            lambda: ctx.step.run("m6", get_int),
            lambda: ctx.step.run("m7", get_int),
            lambda: ctx.step.run("m8", get_int),
            lambda: ctx.step.run("m9", get_int),
            lambda: ctx.step.run("m10", get_int),
            lambda: ctx.step.run("m11", get_int),
            lambda: ctx.step.run("m12", get_int),
            lambda: ctx.step.run("m13", get_int),
        )
    )
    reveal_type(thirteen)  # expect: tuple[int, ...]


@client.create_function(fn_id="steps", trigger=mainspring.TriggerEvent(event="typing/steps"))
async def steps(ctx: mainspring.Context) -> float:
    user = await ctx.step.run("s1", get_user, 1)
    reveal_type(user)  # expect: dict[str, str]
    total = await ctx.step.run("s2", add, 1, 2.0)
    reveal_type(total)  # expect: float
    flag = await ctx.step.run("s3", sync_flag, "x")
    reveal_type(flag)  # expect: bool
    greeting = await ctx.step.run("s4", lambda: "hi")
    reveal_type(greeting)  # expect: str
    event = await ctx.step.wait_for_event("s5", event="e", timeout=1000)
    reveal_type(event)  # expect: Event | None
    invoked = await ctx.step.invoke("s6", function=fives)
    reveal_type(invoked)  # expect: int
    ids = await ctx.step.send_event("s7", mainspring.Event(name="e"))
    reveal_type(ids)  # expect: list[str]
    return total


reveal_type(pairs)  # expect: Function[None]
reveal_type(fives)  # expect: Function[int]
