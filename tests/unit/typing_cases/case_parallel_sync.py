"""``group.parallel`` in sync functions (``ContextSync``): plain callables, no ``await``."""

from __future__ import annotations

from typing import reveal_type

import mainspring

client = mainspring.Client(app_id="typing-cases-sync")


def get_int() -> int:
    return 1


def get_str() -> str:
    return "one"


def get_user(user_id: int) -> dict[str, str]:
    return {"id": str(user_id)}


def scale(value: float, factor: int, /) -> float:
    return value * factor


def nothing() -> None:
    return None


@client.create_function(fn_id="pairs", trigger=mainspring.TriggerEvent(event="typing/pairs"))
def pairs(ctx: mainspring.ContextSync) -> str:
    a, b = ctx.group.parallel(
        (lambda: ctx.step.run("a", get_int), lambda: ctx.step.run("b", get_str))
    )
    reveal_type(a)  # expect: int
    reveal_type(b)  # expect: str
    pair = ctx.group.parallel(
        (lambda: ctx.step.run("c", get_int), lambda: ctx.step.run("d", get_str))
    )
    reveal_type(pair)  # expect: tuple[int, str]
    return b * a


@client.create_function(fn_id="triples", trigger=mainspring.TriggerEvent(event="typing/3"))
def triples(ctx: mainspring.ContextSync) -> None:
    user, scaled, none = ctx.group.parallel(
        (
            lambda: ctx.step.run("user", get_user, 7),
            lambda: ctx.step.run("scaled", scale, 1.5, 2),
            lambda: ctx.step.run("none", nothing),
        ),
        mainspring.ParallelMode.WAIT,
    )
    reveal_type(user)  # expect: dict[str, str]
    reveal_type(scaled)  # expect: float
    reveal_type(none)  # expect: None


@client.create_function(fn_id="fives", trigger=mainspring.TriggerEvent(event="typing/5"))
def fives(ctx: mainspring.ContextSync) -> tuple[int, str, float, bool, list[int]]:
    results = ctx.group.parallel(
        (
            lambda: ctx.step.run("one", get_int),
            lambda: ctx.step.run("two", get_str),
            lambda: ctx.step.run("three", scale, 2.0, 3),
            lambda: ctx.step.run("four", lambda: True),
            lambda: ctx.step.run("five", lambda: [1, 2]),
        ),
        parallel_mode=mainspring.ParallelMode.RACE,
    )
    reveal_type(results)  # expect: tuple[int, str, float, bool, list[int]]
    *_, last = results
    reveal_type(last)  # expect: list[int]
    return results


@client.create_function(fn_id="steps", trigger=mainspring.TriggerEvent(event="typing/steps"))
def steps(ctx: mainspring.ContextSync) -> None:
    user = ctx.step.run("s1", get_user, 1)
    reveal_type(user)  # expect: dict[str, str]
    scaled = ctx.step.run("s2", scale, 1.0, 2)
    reveal_type(scaled)  # expect: float
    event = ctx.step.wait_for_event("s3", event="e", timeout=1000)
    reveal_type(event)  # expect: Event | None
    invoked = ctx.step.invoke("s4", function=pairs)
    reveal_type(invoked)  # expect: str
    ids = ctx.step.send_event("s5", [mainspring.Event(name="e")])
    reveal_type(ids)  # expect: list[str]


reveal_type(pairs)  # expect: Function[str]
reveal_type(fives)  # expect: Function[tuple[int, str, float, bool, list[int]]]
