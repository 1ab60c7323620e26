"""Steps, retries, errors, events and triggers on the embedded engine."""

from __future__ import annotations

import time

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, log_calls, run_to_end, until_idle
from tests.integration.test_parallel import Recorder

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_sequential_steps_memoize_and_return(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="seq")
    rec = Recorder()

    def add(a: int, b: int) -> int:
        rec.hit(f"add{a}")
        return a + b

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> int:
            total = 0
            for i in range(5):
                total = await ctx.step.run("add", add, total, i)
            return total

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> int:
            total = 0
            for i in range(5):
                total = ctx.step.run("add", add, total, i)
            return total

    # A chain budget no loaded machine runs out of: the call's shape is what is checked.
    async with make_engine(client, [fn], chain_seconds=5.0) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == 10
    # The same step id five times: hashed as add, add:1, ... each run once.
    assert rec.calls == ["add0", "add0", "add1", "add3", "add6"]
    # Each new step runs immediately in the call that found it, and the function goes on to
    # the next step in the same call (a chain): one call runs all five and returns.
    assert log.targeted == 0
    assert log.discoveries == 1


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_step_retries_then_succeeds(make_engine: EngineFactory, flavour: str) -> None:
    client = inngest.Client(app_id="retry")
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} failed")
        return "finally"

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
        async def fn(ctx: inngest.Context) -> list[object]:
            value = await ctx.step.run("flaky", flaky)
            return [value, ctx.attempt]

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=3)
        def fn(ctx: inngest.ContextSync) -> list[object]:
            value = ctx.step.run("flaky", flaky)
            return [value, ctx.attempt]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    # The attempt counter is per step: the discovery after the step starts again at 0.
    assert run.output == ["finally", 0]
    assert len(attempts) == 3


async def test_step_failing_for_good_fails_the_run_when_uncaught(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="fail")
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("missing")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def fn(ctx: inngest.Context) -> None:
        await ctx.step.run("broken", broken)

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["name"] == "KeyError"
    assert "missing" in run.error["message"]
    assert len(calls) == 2


async def test_non_retriable_error_in_a_step_fails_it_at_once(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="nonretry")
    calls: list[int] = []

    def refuse() -> None:
        calls.append(1)
        raise inngest.NonRetriableError("no point retrying")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=5)
    async def fn(ctx: inngest.Context) -> str:
        try:
            await ctx.step.run("refuse", refuse)
        except inngest.StepError as err:
            return f"caught {err.name}: {err.message}"
        return "not caught"

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == "caught NonRetriableError: no point retrying"
    assert len(calls) == 1


async def test_non_retriable_error_in_the_function_fails_the_run(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="nonretry")
    calls: list[int] = []

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=5)
    async def fn(ctx: inngest.Context) -> None:
        calls.append(1)
        raise inngest.NonRetriableError("bad input")

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Failed"
    assert run.error is not None
    assert run.error["message"] == "bad input"
    assert len(calls) == 1


async def test_function_level_errors_are_retried(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="fnretry")
    calls: list[int] = []

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def fn(ctx: inngest.Context) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("not yet")
        return ctx.attempt

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == 2
    assert calls == [0, 1, 2]


@pytest.mark.slow
async def test_retry_after_error_delays_the_retry(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="retryafter")
    times: list[float] = []

    def limited() -> str:
        times.append(time.monotonic())
        if len(times) == 1:
            raise inngest.RetryAfterError("rate limited", 1200)
        return "ok"

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=1)
    async def fn(ctx: inngest.Context) -> str:
        return await ctx.step.run("limited", limited)

    async with make_engine(client, [fn], retry_backoff=0.0) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert len(times) == 2
    # The retry waited for Retry-After (1.2 s), not the 0 s backoff.
    assert times[1] - times[0] >= 1.1


async def test_send_event_starts_other_functions(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="fanout")

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="order/placed"))
    async def parent(ctx: inngest.Context) -> list[str]:
        return await ctx.step.send_event(
            "notify",
            [
                inngest.Event(name="order/notify", data={"n": 1}),
                inngest.Event(name="order/notify", data={"n": 2}),
            ],
        )

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="order/notify"))
    async def child(ctx: inngest.Context) -> int:
        return int(ctx.event.data["n"]) * 10

    async with make_engine(client, [parent, child]) as engine:
        run = await run_to_end(engine, inngest.Event(name="order/placed"))
        assert run.status == "Completed", run.error
        ids = run.output
        assert isinstance(ids, list)
        assert len(ids) == 2
        outputs = []
        for event_id in ids:
            [child_run] = await engine.runs(event_id)
            outputs.append((await engine.wait(child_run.id, timeout=5)).output)
    assert sorted(outputs) == [10, 20]


async def test_client_send_from_a_sync_step(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="syncsend")

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="a/go"))
    def parent(ctx: inngest.ContextSync) -> list[str]:
        return ctx.step.run("send", lambda: client.send_sync(inngest.Event(name="a/child")))

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="a/child"))
    def child(ctx: inngest.ContextSync) -> str:
        return ctx.event.name

    async with make_engine(client, [parent, child]) as engine:
        run = await run_to_end(engine, inngest.Event(name="a/go"))
        assert run.status == "Completed", run.error
        [child_run] = await engine.runs(run.output[0])
        assert (await engine.wait(child_run.id, timeout=5)).output == "a/child"


async def test_triggers_by_wildcard_and_expression(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="triggers")

    @client.create_function(fn_id="any-user", trigger=inngest.TriggerEvent(event="user/*"))
    async def any_user(ctx: inngest.Context) -> str:
        return ctx.event.name

    @client.create_function(
        fn_id="big-orders",
        trigger=inngest.TriggerEvent(event="shop/order", expression="event.data.amount > 100"),
    )
    async def big_orders(ctx: inngest.Context) -> int:
        return int(ctx.event.data["amount"])

    async with make_engine(client, [any_user, big_orders]) as engine:
        ids = await engine.send(
            [
                inngest.Event(name="user/created"),
                inngest.Event(name="user/deleted.soft"),
                inngest.Event(name="users"),
                inngest.Event(name="shop/order", data={"amount": 500}),
                inngest.Event(name="shop/order", data={"amount": 5}),
                inngest.Event(name="shop/order", data={}),
            ]
        )
        counts = [len(await engine.runs(event_id)) for event_id in ids]
        assert counts == [1, 1, 0, 1, 0, 0]
        [big] = await engine.runs(ids[3])
        assert (await engine.wait(big.id, timeout=5)).output == 500


async def test_event_id_starts_a_function_once(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="dedupe")
    calls: list[int] = []

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="pay"))
    async def fn(ctx: inngest.Context) -> None:
        calls.append(1)

    async with make_engine(client, [fn]) as engine:
        first = await engine.send(inngest.Event(name="pay", id="invoice-7"))
        second = await engine.send(inngest.Event(name="pay", id="invoice-7"))
        assert first != second  # each send gets its own internal id
        [run] = await engine.runs(first[0])
        assert await engine.runs(second[0]) == []
        await engine.wait(run.id, timeout=5)
    assert calls == [1]


async def test_step_output_is_returned_as_json(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="json")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        pair = await ctx.step.run("pair", lambda: (1, "two"))
        keyed = await ctx.step.run("keyed", lambda: {1: "one"})
        return [pair, keyed]

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    # A tuple comes back as a list and int keys as strings, as after any JSON trip.
    assert run.output == [[1, "two"], {"1": "one"}]


async def test_sleep_inside_a_parallel_group(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="sleepy")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[object]:
        result = await ctx.group.parallel(
            (
                lambda: ctx.step.run("a", lambda: "a"),
                lambda: ctx.step.sleep("nap", 200),
                lambda: ctx.step.run("b", lambda: "b"),
            )
        )
        return list(result)

    async with make_engine(client, [fn]) as engine:
        started = time.monotonic()
        run = await run_to_end(engine, inngest.Event(name="go"))
        elapsed = time.monotonic() - started
    assert run.status == "Completed", run.error
    assert run.output == ["a", None, "b"]
    assert elapsed >= 0.2


async def test_on_failure_runs_once_with_the_original_event_and_error(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="onfail")
    seen: list[dict[str, object]] = []

    async def cleanup(ctx: inngest.Context) -> None:
        seen.append(dict(ctx.event.data))

    @client.create_function(
        fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=0, on_failure=cleanup
    )
    async def fn(ctx: inngest.Context) -> None:
        raise ValueError("it broke")

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go", data={"order": 7}))
        assert run.status == "Failed"
        await until_idle(engine)  # the handler ran, and nothing runs it again
    assert len(seen) == 1, seen
    data = seen[0]
    assert data["function_id"] == "onfail-f"
    assert data["run_id"] == run.id
    event = data["event"]
    assert isinstance(event, dict)
    assert event["data"] == {"order": 7}
    error = data["error"]
    assert isinstance(error, dict)
    assert (error["name"], error["message"]) == ("ValueError", "it broke")
