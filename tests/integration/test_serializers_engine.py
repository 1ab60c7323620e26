"""``output_type`` and pydantic models on the embedded engine (sdk-api §1.13).

Every scenario runs in process and over HTTP (see ``make_engine``). What the engine stores
is JSON; what the function gets back is the declared type, after a replay as well.
"""

from __future__ import annotations

from typing import Any, cast

import pydantic
import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, run_to_end


class User(pydantic.BaseModel):
    id: int
    name: str


ADA = User(id=1, name="ada")
FLAVOURS = pytest.mark.parametrize("flavour", ["async", "sync"])


@FLAVOURS
async def test_models_survive_a_replay_and_reach_the_next_step(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="ser")
    entries: list[str] = []  # one per entry into the function body
    handed: list[str] = []  # what the second step's handler received

    def rename(user: User) -> User:
        handed.append(type(user).__name__)
        return user.model_copy(update={"name": user.name.upper()})

    def fail_once() -> None:
        # The first attempt fails after "load": the retry replays "load" from its memo.
        if len(entries) == 1:
            raise RuntimeError("once")

    trigger = inngest.TriggerEvent(event="go")
    if flavour == "async":

        @client.create_function(fn_id="f", trigger=trigger, retries=1, output_type=User)
        async def fn(ctx: inngest.Context) -> User:
            user = await ctx.step.run("load", lambda: ADA, output_type=User)
            entries.append(type(user).__name__)
            fail_once()
            return await ctx.step.run("rename", rename, user, output_type=User)

    else:

        @client.create_function(fn_id="f", trigger=trigger, retries=1, output_type=User)
        def fn(ctx: inngest.ContextSync) -> User:
            user = ctx.step.run("load", lambda: ADA, output_type=User)
            entries.append(type(user).__name__)
            fail_once()
            return ctx.step.run("rename", rename, user, output_type=User)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
        history = await engine.history(run.id)
    assert run.status == "Completed", run.error
    assert run.output == {"id": 1, "name": "ADA"}
    assert entries == ["User", "User"]  # the replay got the model from the memo
    assert handed == ["User"]
    recorded = {h.user_id: h.output for h in history if h.op == "StepRun"}
    assert recorded["load"] == {"id": 1, "name": "ada"}
    assert recorded["rename"] == {"id": 1, "name": "ADA"}


@FLAVOURS
async def test_invoke_hands_back_the_childs_output_type(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="ser", serializer=inngest.PydanticSerializer())

    @client.create_function(
        fn_id="child", trigger=inngest.TriggerEvent(event="never"), output_type=User
    )
    async def child(ctx: inngest.Context) -> User:
        return User(id=ctx.event.data["id"], name="child")

    trigger = inngest.TriggerEvent(event="go")
    if flavour == "async":

        @client.create_function(fn_id="parent", trigger=trigger)
        async def parent(ctx: inngest.Context) -> list[str]:
            one = await ctx.step.invoke("one", function=child, data=User(id=7, name="x"))
            many = await ctx.step.invoke_by_id(
                "two", function_id="child", data={"id": 8}, output_type=User
            )
            return [type(one).__name__, str(one.id), type(many).__name__, str(many.id)]

    else:

        @client.create_function(fn_id="parent", trigger=trigger)
        def parent(ctx: inngest.ContextSync) -> list[str]:
            one = ctx.step.invoke("one", function=child, data=User(id=7, name="x"))
            many = ctx.step.invoke_by_id(
                "two", function_id="child", data={"id": 8}, output_type=User
            )
            return [type(one).__name__, str(one.id), type(many).__name__, str(many.id)]

    async with make_engine(client, [child, parent]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == ["User", "7", "User", "8"]


async def test_a_step_output_that_does_not_fit_fails_naming_step_and_type(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="ser")
    attempts: list[int] = []

    def not_a_user() -> Any:
        attempts.append(1)
        return "ada"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
    async def fn(ctx: inngest.Context) -> dict[str, str]:
        try:
            await ctx.step.run("load", not_a_user, output_type=User)
        except inngest.StepError as err:
            return {"name": err.name, "message": err.message}
        return {}

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output["name"] == "OutputTypeError"
    assert run.output["message"].startswith(
        "step 'load' returned str, which does not fit output_type=User"
    )
    assert attempts == [1]  # not retried: the same code would fail the same way


async def test_a_function_output_that_does_not_fit_fails_the_run(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="ser")

    @client.create_function(
        fn_id="f", trigger=inngest.TriggerEvent(event="go"), output_type=cast(Any, User)
    )
    async def fn(ctx: inngest.Context) -> str:
        return "ada"

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "OutputTypeError"
    assert run.error["message"].startswith(
        "function 'ser-f' returned str, which does not fit output_type=User"
    )


async def test_a_model_without_output_type_fails_naming_the_fix(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="ser")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.run("load", lambda: ADA)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["code"] == "output_unserializable"
    assert run.error["message"].startswith("step 'load' returned unserializable data: User is")
    assert "pass output_type=User to step.run or create_function" in run.error["message"]


@FLAVOURS
async def test_events_with_model_data_arrive_as_json(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="ser")

    @client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="user/seen"))
    async def echo(ctx: inngest.Context) -> dict[str, Any]:
        return dict(ctx.event.data)

    trigger = inngest.TriggerEvent(event="go")
    if flavour == "async":

        @client.create_function(fn_id="sender", trigger=trigger)
        async def sender(ctx: inngest.Context) -> list[str]:
            event = inngest.Event(name="user/seen", data=User(id=2, name="step"))
            return await ctx.step.send_event("send", event)

    else:

        @client.create_function(fn_id="sender", trigger=trigger)
        def sender(ctx: inngest.ContextSync) -> list[str]:
            event = inngest.Event(name="user/seen", data=User(id=2, name="step"))
            return ctx.step.send_event("send", event)

    async with make_engine(client, [echo, sender]) as engine:
        [direct] = await client.send(inngest.Event(name="user/seen", data=ADA))
        [echoed] = await engine.runs(direct)
        echoed = await engine.wait(echoed.id, timeout=10)
        run = await run_to_end(engine, inngest.Event(name="go"))
        assert run.status == "Completed", run.error
        [from_step] = await engine.runs(run.output[0])
        from_step = await engine.wait(from_step.id, timeout=10)
    assert echoed.output == {"id": 1, "name": "ada"}
    assert from_step.output == {"id": 2, "name": "step"}
