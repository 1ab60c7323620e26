"""Every bad input gets a clear error naming the problem, and nothing stored is lost."""

from __future__ import annotations

import datetime
import pathlib
from typing import cast

import pytest

import mainspring as inngest
from mainspring.engine.store.postgres.store import DatabaseUnavailableError
from mainspring.engine.store.sqlite import SQLiteStore
from tests.conftest import EngineFactory, run_to_end


class NotJSON:
    pass


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_unserializable_step_output_fails_the_run_naming_the_step(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="bad")

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> None:
            await ctx.step.run("fine", lambda: 1)
            await ctx.step.run("make-object", NotJSON)

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> None:
            ctx.step.run("fine", lambda: 1)
            ctx.step.run("make-object", NotJSON)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["code"] == "output_unserializable"
    assert "make-object" in run.error["message"]


async def test_unserializable_function_output_fails_the_run(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="bad")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        return NotJSON()

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["code"] == "output_unserializable"
    assert "bad-f" in run.error["message"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_step_inside_a_step_is_a_clear_non_retriable_error(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="bad")
    calls: list[int] = []

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
        async def fn(ctx: inngest.Context) -> None:
            async def outer() -> int:
                calls.append(1)
                return await ctx.step.run("inner", lambda: 1)

            await ctx.step.run("outer", outer)

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
        def fn(ctx: inngest.ContextSync) -> None:
            def outer() -> int:
                calls.append(1)
                return ctx.step.run("inner", lambda: 1)

            ctx.step.run("outer", outer)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["code"] == "step_nested"
    assert "'inner'" in run.error["message"]
    assert "'outer'" in run.error["message"]
    assert calls == [1]  # not retried


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_non_callable_in_parallel_is_a_type_error_naming_its_position(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="bad")

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
        async def fn(ctx: inngest.Context) -> None:
            await ctx.group.parallel(
                (lambda: ctx.step.run("a", lambda: 1), ctx.step.run("b", lambda: 2))  # type: ignore[arg-type]
            )

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
        def fn(ctx: inngest.ContextSync) -> None:
            ctx.group.parallel((lambda: 1, "not callable"))  # type: ignore[arg-type]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "TypeError"
    assert "item 1" in run.error["message"]
    assert "not a callable" in run.error["message"]


def test_invalid_trigger_expression_fails_at_definition() -> None:
    with pytest.raises(inngest.FunctionConfigInvalidError) as info:
        inngest.TriggerEvent(event="go", expression="event.data.amount >")
    assert "event.data.amount >" in str(info.value)


def test_bad_function_configuration_is_refused() -> None:
    client = inngest.Client(app_id="bad")
    with pytest.raises(inngest.FunctionConfigInvalidError, match="retries"):
        client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=99)
    with pytest.raises(inngest.FunctionConfigInvalidError, match="'\\*' may only end"):
        inngest.TriggerEvent(event="a*b")
    with pytest.raises(inngest.FunctionConfigInvalidError, match="5 fields"):
        inngest.TriggerCron(cron="* * *")
    with pytest.raises(inngest.FunctionConfigInvalidError, match="exactly one argument"):

        @client.create_function(fn_id="g", trigger=inngest.TriggerEvent(event="go"))  # type: ignore[arg-type]
        async def two_args(ctx: inngest.Context, extra: int) -> None:
            return None


async def test_invalid_events_are_refused_and_nothing_is_stored(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="bad")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> None:
        return None

    async with make_engine(client, [fn]) as engine:
        with pytest.raises(inngest.EventInvalidError, match=r"event 1 .*reserved"):
            await engine.send([inngest.Event(name="go"), inngest.Event(name="inngest/x")])
        with pytest.raises(inngest.EventInvalidError, match=r"event 0: the name is required"):
            await engine.send(inngest.Event(name=""))
        with pytest.raises(inngest.EventInvalidError, match="limit"):
            await engine.send(inngest.Event(name="go", data={"blob": "x" * 600_000}))
        with pytest.raises(inngest.EventInvalidError, match="not JSON"):
            await engine.send(inngest.Event(name="go", data={"obj": NotJSON()}))
        # The valid first event of the refused batch was not stored either.
        ok = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(ok[0])
        assert (await engine.wait(run.id, timeout=5)).status == "Completed"


async def test_sleep_longer_than_a_year_fails_the_run_clearly(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="bad")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.sleep("forever", datetime.timedelta(days=400))

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert "366-day" in run.error["message"]
    assert "forever" in run.error["message"]


async def test_unknown_run_id(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="bad")
    async with make_engine(client, []) as engine:
        with pytest.raises(inngest.RunNotFoundError, match="nope"):
            await engine.run("nope")


async def test_engine_refuses_a_second_process_on_the_same_file(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="bad")
    other = inngest.Client(app_id="other")
    async with make_engine(client, []) as engine:
        second = inngest.Engine(other, [], database=cast(SQLiteStore, engine._store).path)
        with pytest.raises(RuntimeError, match="in use by another"):
            await second.start()


@pytest.mark.parametrize("database", [":memory:", "file::memory:?cache=shared", ""])
def test_engine_refuses_a_database_that_is_not_a_file(database: str) -> None:
    # Its writer and reader connections would each see their own empty database.
    with pytest.raises(ValueError, match=r"needs a file path"):
        inngest.Engine(inngest.Client(app_id="bad"), [], database=database)


@pytest.mark.parametrize("database", ["sqlite:///x.db", "mysql://user:secret@h/db"])
def test_engine_refuses_an_unknown_database_url_without_making_a_file_or_echoing_it(
    database: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Taken as a path, a URL used to become a SQLite file under a folder named "sqlite:".
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"not a supported database") as refused:
        inngest.Engine(inngest.Client(app_id="bad"), [], database=database)
    assert database.split("://")[0] in str(refused.value)
    assert "secret" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("database", "named", "why"),
    [
        # Nothing listens on this port: the connection is refused at once.
        ("postgresql://postgres:secret@127.0.0.1:1/test", "127.0.0.1:1", "refused"),
        # The server is there; the role is not (how a wrong user shows with trust auth).
        (
            "postgresql://nobody_here:secret@127.0.0.1:5432/test",
            "127.0.0.1:5432",
            'role "nobody_here" does not exist',
        ),
        # The server is there; the database is not.
        (
            "postgresql://postgres:secret@127.0.0.1:5432/no_such_database_here",
            "127.0.0.1:5432",
            "does not exist",
        ),
    ],
)
async def test_an_unreachable_postgres_database_fails_start_naming_where(
    database: str, named: str, why: str
) -> None:
    if "does not exist" in why:
        from tests.postgres_support import TEMPLATES

        with TEMPLATES.clone():
            pass  # fails (CI) or skips here when the server itself is unreachable
    engine = inngest.Engine(inngest.Client(app_id="bad"), [], database=database)
    with pytest.raises(DatabaseUnavailableError) as refused:
        await engine.start()
    message = str(refused.value)
    assert f"cannot connect to PostgreSQL at {named}" in message
    assert why in message
    assert "secret" not in message


def test_bad_flow_control_is_refused_at_definition_naming_the_field() -> None:
    client = inngest.Client(app_id="bad")
    trigger = inngest.TriggerEvent(event="go")
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^Throttle\.period: '0s'"):
        inngest.Throttle(limit=1, period="0s")
    with pytest.raises(inngest.FunctionConfigInvalidError, match=r"^Concurrency\.limit: expected"):
        inngest.Concurrency(limit="3")  # type: ignore[arg-type]
    with pytest.raises(
        inngest.FunctionConfigInvalidError, match=r"^function 'f': throttle: expected a Throttle"
    ):
        client.create_function(fn_id="f", trigger=trigger, throttle=5)  # type: ignore[call-overload]
    with pytest.raises(
        inngest.FunctionConfigInvalidError,
        match=r"^function 'f': batch_events: cannot be combined with priority",
    ):
        client.create_function(
            fn_id="f",
            trigger=trigger,
            batch_events=inngest.Batch(max_size=10, timeout=datetime.timedelta(seconds=5)),
            priority=inngest.Priority(run="event.data.vip ? 60 : 0"),
        )
