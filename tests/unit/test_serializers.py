"""Serializers and ``output_type`` (sdk-api §1.13), against hand-built call requests.

A fresh :class:`Execution` per request is a replay from the top, as an HTTP SDK does on
every call: a memo is what the step recorded, so these tests see both sides of a step
with an ``output_type``: what it records (JSON) and what the function gets back (a model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import inspect
import typing
from typing import Annotated, Any, cast

import orjson
import pydantic
import pytest

import mainspring as inngest
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    Failure,
    Ops,
)
from mainspring.protocol.opcodes import Opcode
from mainspring.protocol.step_ids import hash_step_id
from mainspring.sdk.execution import Execution
from mainspring.sdk.serialize import UnserializableError, dump_json
from mainspring.sdk.serializer import OutputTypeError, PydanticSerializer


class User(pydantic.BaseModel):
    id: int
    name: str
    joined: datetime.date = datetime.date(2024, 1, 2)


ADA = User(id=1, name="ada")
ADA_JSON = {"id": 1, "name": "ada", "joined": "2024-01-02"}
LOAD, RENAME, CALL = (hash_step_id(s) for s in ("load", "rename", "call"))


async def call(
    client: inngest.Client,
    function: inngest.Function[Any],
    steps: dict[str, Any] | None = None,
    *,
    target: str | None = None,
) -> CallResponse:
    steps = steps or {}
    request = CallRequest(
        fn_id=function.id,
        event={"name": "go", "data": {}},
        events=[{"name": "go", "data": {}}],
        steps=steps,
        ctx=CallContext(run_id="run-1", stack=list(steps)),
        step_id=target,
    )
    execution = Execution(function, client, request)
    try:
        response = await execution.call(request)
    finally:
        execution.abandon()
        await asyncio.sleep(0)
    assert response is not None
    return response


def ran(response: CallResponse) -> Any:
    """The output of the one step the response says ran."""
    assert isinstance(response, Ops), response
    [op] = response.ops
    assert op.op is Opcode.STEP_RUN, op
    assert op.data is not None
    return orjson.loads(op.data)


def failed_step(response: CallResponse) -> str:
    assert isinstance(response, Ops), response
    [op] = response.ops
    assert op.op is Opcode.STEP_FAILED, op  # not retried: the same code fails the same way
    assert op.error is not None
    assert op.error.name == "OutputTypeError"
    return op.error.message


# -- PydanticSerializer -------------------------------------------------------------------


def test_pydantic_serializer_dumps_json_and_validates_back() -> None:
    serializer = PydanticSerializer()
    assert serializer.serialize(ADA, User) == ADA_JSON
    assert serializer.deserialize(ADA_JSON, User) == ADA
    assert serializer.serialize([ADA], list[User]) == [ADA_JSON]
    assert serializer.deserialize([ADA_JSON], list[User]) == [ADA]
    assert serializer.serialize(None, User | None) is None
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    assert serializer.deserialize(serializer.serialize(when, datetime.datetime), datetime.datetime)
    assert serializer.deserialize("7", int) == 7  # primitives validate too (reference #269)


def test_pydantic_serializer_takes_what_validates_into_the_type() -> None:
    serializer = PydanticSerializer()
    # A dict or a tuple is not of the type, but validates into it: recorded as the type's.
    assert serializer.serialize({"id": "1", "name": "ada"}, User) == ADA_JSON
    assert serializer.serialize((ADA,), list[User]) == [ADA_JSON]


@pytest.mark.parametrize(
    ("value", "typ"), [("ada", User), ({"id": 1}, User), ([ADA, 3], list[User]), ("x", int)]
)
def test_pydantic_serializer_refuses_what_does_not_fit(value: object, typ: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        PydanticSerializer().serialize(value, typ)
    with pytest.raises(pydantic.ValidationError):
        PydanticSerializer().deserialize(value, typ)


def test_adapters_are_cached_per_type_and_bounded() -> None:
    serializer = PydanticSerializer()
    cache = serializer._adapters
    assert cache.get(User) is cache.get(User)
    unhashable = Annotated[int, {"unhashable": "metadata"}]
    assert cache.get(unhashable) is cache.get(unhashable)
    for size in range(600):
        cache.get(Annotated[int, pydantic.Field(le=size)])
    assert len(cache) == 512


def test_the_serializer_protocol_is_what_the_client_takes() -> None:
    assert isinstance(PydanticSerializer(), inngest.Serializer)
    client = inngest.Client(app_id="s", serializer=PydanticSerializer())
    assert isinstance(client.serializer, PydanticSerializer)
    assert inngest.Client(app_id="s").serializer is None
    with pytest.raises(inngest.FunctionConfigInvalidError, match="serializer must have"):
        inngest.Client(app_id="s", serializer=cast(Any, object()))


def test_create_function_overloads_take_the_implementations_parameters() -> None:
    """The overloads repeat every parameter; one added to the implementation only would
    be refused by type checkers."""
    implementation = inspect.signature(inngest.Client.create_function)
    overloads = typing.get_overloads(inngest.Client.create_function)
    assert len(overloads) == 2
    for overload in overloads:
        assert list(inspect.signature(overload).parameters) == list(implementation.parameters)


# -- step.run with output_type ------------------------------------------------------------


def build(client: inngest.Client) -> tuple[inngest.Function[Any], inngest.Function[Any]]:
    """The same function, async and sync: load a User, rename it, return it."""

    def rename(user: User) -> User:
        assert isinstance(user, User), user  # the step's handler gets the model too
        return user.model_copy(update={"name": user.name.upper()})

    @client.create_function(fn_id="a", trigger=inngest.TriggerEvent(event="go"))
    async def run_async(ctx: inngest.Context) -> dict[str, Any]:
        user = await ctx.step.run("load", lambda: ADA, output_type=User)
        renamed = await ctx.step.run("rename", rename, user, output_type=User)
        return {"types": [type(user).__name__, type(renamed).__name__], "name": renamed.name}

    @client.create_function(fn_id="s", trigger=inngest.TriggerEvent(event="go"))
    def run_sync(ctx: inngest.ContextSync) -> dict[str, Any]:
        user = ctx.step.run("load", lambda: ADA, output_type=User)
        renamed = ctx.step.run("rename", rename, user, output_type=User)
        return {"types": [type(user).__name__, type(renamed).__name__], "name": renamed.name}

    return run_async, run_sync


FLAVOURS = pytest.mark.parametrize("flavour", [0, 1], ids=["async", "sync"])


@FLAVOURS
async def test_a_step_records_json_and_replays_as_the_model(flavour: int) -> None:
    client = inngest.Client(app_id="core")
    function = build(client)[flavour]
    assert ran(await call(client, function)) == ADA_JSON
    # Replays: the recorded JSON comes back as a User, to the body and to the next step.
    renamed = ran(await call(client, function, {LOAD: {"data": ADA_JSON}}))
    assert renamed == {**ADA_JSON, "name": "ADA"}
    done = await call(client, function, {LOAD: {"data": ADA_JSON}, RENAME: {"data": renamed}})
    assert isinstance(done, Complete), done
    assert orjson.loads(done.output) == {"types": ["User", "User"], "name": "ADA"}


@FLAVOURS
async def test_a_custom_serializer_is_used_both_ways(flavour: int) -> None:
    @dataclasses.dataclass
    class Boxed:
        """Records any value as ``{"boxed": value}``."""

        seen: list[tuple[str, object]] = dataclasses.field(default_factory=list)

        def serialize(self, obj: object, typ: object) -> object:
            self.seen.append(("serialize", typ))
            return {"boxed": cast(User, obj).name}

        def deserialize(self, obj: object, typ: object) -> object:
            self.seen.append(("deserialize", typ))
            return User(id=0, name=cast(dict[str, str], obj)["boxed"])

    boxed = Boxed()
    client = inngest.Client(app_id="core", serializer=boxed)
    function = build(client)[flavour]
    assert ran(await call(client, function)) == {"boxed": "ada"}
    assert ran(await call(client, function, {LOAD: {"data": {"boxed": "bob"}}})) == {"boxed": "BOB"}
    assert boxed.seen == [("serialize", User), ("deserialize", User), ("serialize", User)]


@FLAVOURS
async def test_a_step_output_that_does_not_fit_fails_the_step_naming_it(flavour: int) -> None:
    client = inngest.Client(app_id="core")

    @client.create_function(fn_id="a", trigger=inngest.TriggerEvent(event="go"))
    async def run_async(ctx: inngest.Context) -> None:
        await ctx.step.run("load", lambda: "ada", output_type=cast(Any, User))

    @client.create_function(fn_id="s", trigger=inngest.TriggerEvent(event="go"))
    def run_sync(ctx: inngest.ContextSync) -> None:
        ctx.step.run("load", lambda: "ada", output_type=cast(Any, User))

    message = failed_step(await call(client, [run_async, run_sync][flavour]))
    assert message.startswith("step 'load' returned str, which does not fit output_type=User")


@FLAVOURS
async def test_a_recorded_output_that_does_not_fit_fails_the_run_naming_it(flavour: int) -> None:
    client = inngest.Client(app_id="core")
    response = await call(client, build(client)[flavour], {LOAD: {"data": {"id": "x"}}})
    assert isinstance(response, Failure), response
    assert not response.retriable
    assert response.error.name == "OutputTypeError"
    assert response.error.message.startswith(
        "the recorded output of step 'load' does not fit output_type=User"
    )


@FLAVOURS
async def test_without_output_type_a_model_is_refused_naming_the_fix(flavour: int) -> None:
    client = inngest.Client(app_id="core")

    @client.create_function(fn_id="a", trigger=inngest.TriggerEvent(event="go"))
    async def run_async(ctx: inngest.Context) -> None:
        await ctx.step.run("load", lambda: ADA)

    @client.create_function(fn_id="s", trigger=inngest.TriggerEvent(event="go"))
    def run_sync(ctx: inngest.ContextSync) -> None:
        ctx.step.run("load", lambda: ADA)

    response = await call(client, [run_async, run_sync][flavour])
    assert isinstance(response, Failure), response
    assert response.error.code == ErrorCode.OUTPUT_UNSERIALIZABLE
    assert response.error.message.startswith("step 'load' returned unserializable data: ")
    assert "pass output_type=User to step.run or create_function" in response.error.message
    assert "PydanticSerializer" in response.error.message


def test_only_pydantic_models_get_the_output_type_hint() -> None:
    with pytest.raises(UnserializableError, match="output_type=User"):
        dump_json({"nested": [ADA]})
    with pytest.raises(UnserializableError, match=r"^Type is not JSON serializable: object$"):
        dump_json({"nested": [object()]})


# -- a function's output_type and invoke ----------------------------------------------------


@FLAVOURS
async def test_a_function_output_type_serialises_its_return(flavour: int) -> None:
    client = inngest.Client(app_id="core")

    @client.create_function(fn_id="a", trigger=inngest.TriggerEvent(event="go"), output_type=User)
    async def run_async(ctx: inngest.Context) -> User:
        return ADA

    @client.create_function(fn_id="s", trigger=inngest.TriggerEvent(event="go"), output_type=User)
    def run_sync(ctx: inngest.ContextSync) -> User:
        return ADA

    function = [run_async, run_sync][flavour]
    assert function.output_type is User
    assert function.is_handler_async is (flavour == 0)
    done = await call(client, function)
    assert isinstance(done, Complete), done
    assert orjson.loads(done.output) == ADA_JSON


@FLAVOURS
async def test_a_function_output_that_does_not_fit_fails_the_run_naming_it(flavour: int) -> None:
    client = inngest.Client(app_id="core")
    user = cast(Any, User)

    @client.create_function(fn_id="a", trigger=inngest.TriggerEvent(event="go"), output_type=user)
    async def run_async(ctx: inngest.Context) -> str:
        return "ada"

    @client.create_function(fn_id="s", trigger=inngest.TriggerEvent(event="go"), output_type=user)
    def run_sync(ctx: inngest.ContextSync) -> str:
        return "ada"

    response = await call(client, [run_async, run_sync][flavour])
    assert isinstance(response, Failure), response
    assert not response.retriable
    assert response.error.message.startswith(
        f"function 'core-{'as'[flavour]}' returned str, which does not fit output_type=User"
    )


async def test_invoke_results_come_back_as_the_output_type() -> None:
    client = inngest.Client(app_id="core")

    @client.create_function(
        fn_id="child", trigger=inngest.TriggerEvent(event="x"), output_type=User
    )
    async def child(ctx: inngest.Context) -> User:
        return ADA

    @client.create_function(fn_id="by-fn", trigger=inngest.TriggerEvent(event="go"))
    async def by_function(ctx: inngest.Context) -> list[str]:
        user = await ctx.step.invoke("call", function=child)
        return [type(user).__name__, user.name]

    @client.create_function(fn_id="by-id", trigger=inngest.TriggerEvent(event="go"))
    def by_id(ctx: inngest.ContextSync) -> list[str]:
        users = ctx.step.invoke_by_id("call", function_id="many", output_type=list[User])
        untyped = ctx.step.invoke_by_id("call", function_id="many")
        return [type(users[0]).__name__, type(untyped[0]).__name__]

    done = await call(client, by_function, {CALL: {"data": ADA_JSON}})
    assert isinstance(done, Complete), done
    assert orjson.loads(done.output) == ["User", "ada"]
    again = hash_step_id("call", 1)
    done = await call(client, by_id, {CALL: {"data": [ADA_JSON]}, again: {"data": [ADA_JSON]}})
    assert isinstance(done, Complete), done
    assert orjson.loads(done.output) == ["User", "dict"]
    refused = await call(client, by_function, {CALL: {"data": ["not", "a", "user"]}})
    assert isinstance(refused, Failure), refused
    assert "the recorded output of step 'call' does not fit output_type=User" in (
        refused.error.message
    )


def test_invoke_data_and_event_data_may_be_models() -> None:
    event = inngest.Event(name="go", data=ADA)
    assert event.data == ADA_JSON
    assert event.to_wire() == {"name": "go", "data": ADA_JSON}
    from mainspring.sdk.step import invoke_spec

    spec = invoke_spec("call", "core-child", ADA, None, None)
    assert spec.opts is not None
    assert spec.opts["payload"] == {"data": ADA_JSON}


def test_output_type_error_is_not_retried() -> None:
    assert issubclass(OutputTypeError, inngest.NonRetriableError)
