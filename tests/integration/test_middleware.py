"""Middleware (sdk/middleware.py): the reference's hooks, in its order, around every call,
on async and sync functions, in process and over HTTP."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import mainspring as inngest
from mainspring.errors import FunctionConfigInvalidError
from tests.conftest import EngineFactory, run_to_end, store_rows, wait_for_pauses

pytestmark = pytest.mark.backends("sqlite")


def recorder(name: str, log: list[str]) -> Any:
    """A middleware class that notes each hook it gets, as ``name.hook``."""

    class Recording(inngest.MiddlewareSync):
        def transform_input(self, ctx: Any, function: Any, steps: inngest.StepMemos) -> None:
            log.append(f"{name}.transform_input")

        def before_execution(self) -> None:
            log.append(f"{name}.before_execution")

        def after_execution(self) -> None:
            log.append(f"{name}.after_execution")

        def transform_output(self, result: inngest.TransformOutputResult) -> None:
            log.append(f"{name}.transform_output")

        def before_response(self) -> None:
            log.append(f"{name}.before_response")

    return Recording


def two_steps(client: inngest.Client, *, sync: bool, **options: Any) -> inngest.Function[Any]:
    trigger = inngest.TriggerEvent(event="mw/go")
    if sync:

        @client.create_function(fn_id="steps", trigger=trigger, retries=0, **options)
        def handler_sync(ctx: inngest.ContextSync) -> list[int]:
            a = ctx.step.run("a", lambda: 1)
            b = ctx.step.run("b", lambda: a + 1)
            return [a, b]

        made: inngest.Function[Any] = handler_sync
        return made

    @client.create_function(fn_id="steps", trigger=trigger, retries=0, **options)
    async def handler(ctx: inngest.Context) -> list[int]:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: a + 1)
        return [a, b]

    made_async: inngest.Function[Any] = handler
    return made_async


def calls_of(log: list[str]) -> list[list[str]]:
    """The log cut into calls: each starts with the first middleware's transform_input."""
    calls: list[list[str]] = []
    for entry in log:
        if entry == "client.transform_input":
            calls.append([])
        calls[-1].append(entry)
    return calls


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_hooks_run_in_the_reference_order_once_per_call(
    make_engine: EngineFactory, sync: bool
) -> None:
    log: list[str] = []
    client = inngest.Client(app_id="mw", middleware=[recorder("client", log)])
    fn = two_steps(client, sync=sync, middleware=[recorder("function", log)])
    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="mw/go"))
    assert (run.status, run.output) == (inngest.RunStatus.COMPLETED, [1, 2])
    calls = calls_of(log)
    assert calls, log
    for call in calls:
        # Before hooks in registration order, after hooks in reverse, each once a call
        # (transform_output once per output the answer carries).
        assert call[:2] == ["client.transform_input", "function.transform_input"]
        execution = [e for e in call if e.endswith(("before_execution", "after_execution"))]
        assert execution == [
            "client.before_execution",
            "function.before_execution",
            "function.after_execution",
            "client.after_execution",
        ], call
        outputs = [e for e in call if e.endswith("transform_output")]
        assert outputs, call
        assert outputs[0] == "function.transform_output", call
        assert outputs.count("function.transform_output") == outputs.count(
            "client.transform_output"
        )
        assert call[-2:] == ["client.before_response", "function.before_response"], call
        assert call.index("client.after_execution") < call.index(outputs[0])


class Wrapping(inngest.MiddlewareSync):
    """Wraps every output on its way out and unwraps what comes back (as encryption does)."""

    def transform_output(self, result: inngest.TransformOutputResult) -> None:
        if result.has_output():
            result.output = {"wrapped": result.output}

    def transform_input(self, ctx: Any, function: Any, steps: inngest.StepMemos) -> None:
        for memo in steps.values():
            if isinstance(memo.data, dict) and "wrapped" in memo.data:
                memo.data = memo.data["wrapped"]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_outputs_are_transformed_before_they_are_recorded_and_back_on_replay(
    make_engine: EngineFactory, sync: bool
) -> None:
    client = inngest.Client(app_id="mw", middleware=[Wrapping])
    fn = two_steps(client, sync=sync)
    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="mw/go"))
        memos = await store_rows(engine, "SELECT memo FROM steps WHERE run_id = ?", run.id)
    # The function saw 1 then 2 (b = a + 1 ran on the unwrapped a); the store holds what
    # the middleware made of them.
    assert (run.status, run.output) == (inngest.RunStatus.COMPLETED, {"wrapped": [1, 2]})
    recorded = sorted(orjson.dumps(orjson.loads(bytes(m[0]))) for m in memos)
    assert recorded == [b'{"data":{"wrapped":1}}', b'{"data":{"wrapped":2}}']


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_replay_gets_the_recorded_results_transformed_back(
    make_engine: EngineFactory, sync: bool
) -> None:
    """A new engine on the same database replays the run from its recorded (wrapped)
    results: without transform_input, ``a + 1`` would meet ``{"wrapped": 1}``."""
    client = inngest.Client(app_id="mw", middleware=[Wrapping])
    trigger = inngest.TriggerEvent(event="mw/go")
    if sync:

        @client.create_function(fn_id="resumed", trigger=trigger, retries=0)
        def resumed_sync(ctx: inngest.ContextSync) -> int:
            a = ctx.step.run("a", lambda: 1)
            ctx.step.wait_for_event("w", event="mw/resume", timeout=3_600_000)
            return ctx.step.run("b", lambda: a + 1)

        fn: inngest.Function[Any] = resumed_sync
    else:

        @client.create_function(fn_id="resumed", trigger=trigger, retries=0)
        async def resumed(ctx: inngest.Context) -> int:
            a = await ctx.step.run("a", lambda: 1)
            await ctx.step.wait_for_event("w", event="mw/resume", timeout=3_600_000)
            return await ctx.step.run("b", lambda: a + 1)

        fn = resumed
    async with make_engine(client, [fn]) as engine:
        [event_id] = await engine.send(inngest.Event(name="mw/go"))
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
    async with make_engine(client, [fn]) as engine:
        await engine.send(inngest.Event(name="mw/resume"))
        done = await engine.wait(run.id, timeout=10)
    assert (done.status, done.output) == (inngest.RunStatus.COMPLETED, {"wrapped": 2})


async def test_every_step_of_a_parallel_plan_is_transformed(make_engine: EngineFactory) -> None:
    """Beyond the reference, which skips transform_output when an answer reports more than
    one step: an invoke planned in a parallel group gets its payload transformed too."""
    seen: list[str] = []

    class Stamping(inngest.MiddlewareSync):
        def transform_output(self, result: inngest.TransformOutputResult) -> None:
            step = result.step
            if step is None:
                return
            seen.append(step.op.value)
            if step.op.value == "InvokeFunction" and step.opts is not None:
                payload = step.opts.get("payload", {})
                payload["data"] = {**payload.get("data", {}), "stamped": True}

    client = inngest.Client(app_id="mw", middleware=[Stamping])

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="mw/never"))
    async def child(ctx: inngest.Context) -> Any:
        return ctx.event.data.get("stamped", False)

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="mw/go"))
    async def parent(ctx: inngest.Context) -> Any:
        return await ctx.group.parallel(
            (
                lambda: ctx.step.run("a", lambda: "a"),
                lambda: ctx.step.invoke("call-child", function=child, data={"x": 1}),
            )
        )

    async with make_engine(client, [child, parent]) as engine:
        run = await run_to_end(engine, inngest.Event(name="mw/go"))
    assert (run.status, run.output) == (inngest.RunStatus.COMPLETED, ["a", True])
    assert "InvokeFunction" in seen


async def test_sends_go_through_the_clients_middleware(make_engine: EngineFactory) -> None:
    results: list[inngest.SendEventsResult] = []

    class Tagging(inngest.Middleware):
        async def before_send_events(self, events: list[inngest.Event]) -> None:
            for event in events:
                event.data = {**event.data, "tagged": True}

        async def after_send_events(self, result: inngest.SendEventsResult) -> None:
            results.append(result)

    client = inngest.Client(app_id="mw", middleware=[Tagging])

    @client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="mw/sent"))
    async def echo(ctx: inngest.Context) -> Any:
        return dict(ctx.event.data)

    async with make_engine(client, [echo]) as engine:
        event = inngest.Event(name="mw/sent", data={"n": 1})
        [event_id] = await client.send(event)
        [run] = await engine.runs(event_id)
        done = await engine.wait(run.id, timeout=10)
        assert done.output == {"n": 1, "tagged": True}
        assert dict(event.data) == {"n": 1}  # the caller's event is left as it was
        assert [r.ids for r in results] == [[event_id]]
        [plain_id] = await client.send(event, skip_middleware=True)
        [plain] = await engine.runs(plain_id)
        assert (await engine.wait(plain.id, timeout=10)).output == {"n": 1}
        assert len(results) == 1


async def test_a_failing_hook_fails_the_call_with_its_error(make_engine: EngineFactory) -> None:
    class Broken(inngest.MiddlewareSync):
        def before_execution(self) -> None:
            raise RuntimeError("the tracer is down")

    client = inngest.Client(app_id="mw", middleware=[Broken])
    fn = two_steps(client, sync=False)
    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="mw/go"))
    assert run.status is inngest.RunStatus.FAILED
    assert run.error is not None
    assert "the tracer is down" in str(run.error)


def test_middleware_must_be_factories() -> None:
    client = inngest.Client(app_id="mw")
    with pytest.raises(FunctionConfigInvalidError, match="pass the class"):
        inngest.Client(app_id="mw", middleware=[inngest.MiddlewareSync(client, None)])  # type: ignore[list-item]
    with pytest.raises(FunctionConfigInvalidError, match="must be a list"):
        two_steps(client, sync=False, middleware=Wrapping)
    with pytest.raises(FunctionConfigInvalidError, match="not a middleware class"):
        inngest.Client(app_id="mw", middleware=["Wrapping"])  # type: ignore[list-item]
