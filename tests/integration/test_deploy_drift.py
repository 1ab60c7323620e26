"""Code that changes under a run in flight (issue: deploys). Each test runs a first
version of a function until a step is waiting to be retried, stops the engine, and starts
it again on the same database with a second version, as a deploy does.

The rules (the reference's): a step id the code no longer reaches is a step that no
longer exists, and the run goes on; an id the run has not seen is a new step with a fresh
retry budget.
"""

from __future__ import annotations

from typing import Any

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, wait_for_job, wait_for_step

pytestmark = pytest.mark.backends("sqlite", "postgres")

#: Long enough that a retry is still waiting when the first version stops.
BACKOFF = 60.0


def fails(name: str) -> Any:
    def step() -> str:
        raise RuntimeError(f"{name} fails in the first version")

    return step


async def first_version_until_a_retry(
    make_engine: EngineFactory,
    fn: inngest.Function[Any],
    client: inngest.Client,
    clock: inngest.ManualClock,
    failing: str,
) -> str:
    async with make_engine(client, [fn], clock=clock, retry_backoff=BACKOFF) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_step(engine, run.id, failing)
    return run.id


def dropped(history: list[inngest.StepAttempt], user_id: str) -> list[inngest.StepAttempt]:
    return [h for h in history if h.op == "StepDropped" and h.user_id == user_id]


@pytest.mark.parametrize("change", ["renamed", "removed"])
async def test_a_group_member_waiting_to_retry_that_the_new_code_lacks_is_dropped(
    make_engine: EngineFactory, change: str
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()

    @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
    async def v1(ctx: inngest.Context) -> object:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p1", lambda: "one"), lambda: ctx.step.run("p2", fails("p2")))
        )

    run_id = await first_version_until_a_retry(make_engine, v1, client, clock, "p2")

    client = inngest.Client(app_id="deploys")
    if change == "renamed":

        @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            return await ctx.group.parallel(
                (
                    lambda: ctx.step.run("p1", lambda: "one"),
                    lambda: ctx.step.run("p2x", lambda: "new"),
                )
            )

    else:

        @client.create_function(fn_id="group", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            return await ctx.group.parallel((lambda: ctx.step.run("p1", lambda: "one"),))

    async with make_engine(client, [v2], clock=clock, retry_backoff=BACKOFF) as engine:
        clock.advance(BACKOFF + 1)  # the retry of p2 is due
        run = await engine.wait(run_id, timeout=5)
        history = await engine.history(run_id)
    assert run.status == "Completed", run.error
    assert run.output == (["one", "new"] if change == "renamed" else ["one"])
    [drop] = dropped(history, "p2")
    assert drop.error is not None
    assert "'p2' is no longer reached by the function's code" in drop.error["message"]
    # The dropped step's result was never recorded; p1's stood.
    assert [h.user_id for h in history if h.op == "StepRun"] == (
        ["p1", "p2x"] if change == "renamed" else ["p1"]
    )


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_renamed_step_starts_with_a_fresh_retry_budget(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    attempts: list[int] = []

    if flavour == "async":

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v1(ctx: inngest.Context) -> object:
            await ctx.step.run("before", lambda: 1)
            return await ctx.step.run("charge", fails("charge"))

    else:

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def v1(ctx: inngest.ContextSync) -> object:
            ctx.step.run("before", lambda: 1)
            return ctx.step.run("charge", fails("charge"))

    run_id = await first_version_until_a_retry(make_engine, v1, client, clock, "charge")

    client = inngest.Client(app_id="deploys")

    if flavour == "async":

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def v2(ctx: inngest.Context) -> object:
            await ctx.step.run("before", lambda: 1)

            def charge() -> str:
                attempts.append(ctx.attempt)
                return "charged once"

            return await ctx.step.run("charge-v2", charge)

    else:

        @client.create_function(fn_id="seq", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def v2(ctx: inngest.ContextSync) -> object:
            ctx.step.run("before", lambda: 1)

            def charge() -> str:
                attempts.append(ctx.attempt)
                return "charged once"

            return ctx.step.run("charge-v2", charge)

    async with make_engine(client, [v2], clock=clock, retry_backoff=BACKOFF) as engine:
        clock.advance(BACKOFF + 1)
        run = await engine.wait(run_id, timeout=5)
        history = await engine.history(run_id)
    assert run.status == "Completed", run.error
    assert run.output == "charged once"
    assert attempts == [0]  # not attempt 1 of its predecessor's budget
    assert len(dropped(history, "charge")) == 1


#: (first version's step, second version's step) reusing the id "nap".
KIND_CHANGES = [
    pytest.param("sleep", "run", "recorded as step.sleep", "calls it as step.run", id="sleep-run"),
    pytest.param("sleep", "wait", "recorded as step.sleep", "step.wait_for_event", id="sleep-wait"),
    pytest.param("run", "sleep", "recorded as step.run", "calls it as step.sleep", id="run-sleep"),
]


def kind_version(client: inngest.Client, kind: str, flavour: str, ran: list[str]) -> Any:
    """A function whose second step is "nap" of this kind, then a long sleep."""

    def charge() -> str:
        ran.append("charge")
        return "charged"

    if flavour == "async":

        @client.create_function(fn_id="kinds", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> object:
            await ctx.step.run("first", lambda: 1)
            got: object = None
            if kind == "sleep":
                await ctx.step.sleep("nap", 1_000)
            elif kind == "run":
                got = await ctx.step.run("nap", charge)
            else:
                got = await ctx.step.wait_for_event("nap", event="never", timeout=60_000)
            await ctx.step.sleep("long", 86_400_000)
            return got

    else:

        @client.create_function(fn_id="kinds", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> object:
            ctx.step.run("first", lambda: 1)
            got: object = None
            if kind == "sleep":
                ctx.step.sleep("nap", 1_000)
            elif kind == "run":
                got = ctx.step.run("nap", charge)
            else:
                got = ctx.step.wait_for_event("nap", event="never", timeout=60_000)
            ctx.step.sleep("long", 86_400_000)
            return got

    return fn


@pytest.mark.parametrize("flavour", ["async", "sync"])
@pytest.mark.parametrize(("before", "after", "was", "now"), KIND_CHANGES)
async def test_a_step_id_reused_by_another_kind_of_step_fails_the_run_naming_both(
    make_engine: EngineFactory, flavour: str, before: str, after: str, was: str, now: str
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    ran: list[str] = []
    v1 = kind_version(client, before, flavour, ran)
    async with make_engine(client, [v1], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        if before == "sleep":
            await wait_for_job(engine, run.id, "sleep")
            clock.advance(2)  # the nap ends and is recorded
        await wait_for_step(engine, run.id, "nap")
        await wait_for_job(engine, run.id, "sleep")  # the long sleep after it

    client = inngest.Client(app_id="deploys")
    ran.clear()
    v2 = kind_version(client, after, flavour, ran)
    async with make_engine(client, [v2], clock=clock) as engine:
        clock.advance(86_401)  # the long sleep ends: v2 replays the run
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Failed"
    assert done.error is not None
    assert done.error["name"] == "StepKindChangedError"
    assert done.error["code"] == "step_kind_changed"
    message = done.error["message"]
    assert "step 'nap'" in message, message
    assert was in message, message
    assert now in message, message
    assert "Give the new step a new id" in message
    assert ran == []  # v2's step never ran on v1's memo


def three_steps(client: inngest.Client, names: list[str]) -> Any:
    @client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> object:
        for name in names:
            await ctx.step.run(name, str, name)
        await ctx.step.sleep("long", 86_400_000)
        return names

    return fn


def code_changed(history: list[inngest.StepAttempt]) -> list[str]:
    return [str((h.error or {}).get("message")) for h in history if h.op == "CodeChanged"]


@pytest.mark.parametrize(
    ("second", "note"),
    [
        pytest.param(
            ["a", "c"],
            "the function returned without reaching the recorded step(s) 'b'",
            id="removed",
        ),
        pytest.param(
            ["a", "x", "b", "c"],
            "the function went on to 'x' before reaching the recorded step(s) 'b', 'c', 'long'",
            id="inserted",
        ),
    ],
)
async def test_a_call_that_does_not_reach_every_recorded_step_is_noted_once(
    make_engine: EngineFactory,
    caplog: pytest.LogCaptureFixture,
    second: list[str],
    note: str,
) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    async with make_engine(client, [three_steps(client, ["a", "b", "c"])], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")

    client = inngest.Client(app_id="deploys")
    async with make_engine(client, [three_steps(client, second)], clock=clock) as engine:
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.output == second
    [message] = code_changed(history)
    assert note in message, message
    warnings = [
        r.getMessage() for r in caplog.records if "code changed under this run" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings


async def test_an_unchanged_function_leaves_no_note(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    fn = three_steps(client, ["a", "b", "c"])
    async with make_engine(client, [fn], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
    async with make_engine(client, [fn], clock=clock) as engine:
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert code_changed(history) == []


def fetching(client: inngest.Client, shape: str) -> Any:
    """The step "fetch" returns a dict in the first version and a string in the second,
    whose code calls ``.upper()`` on it."""

    @client.create_function(fn_id="fetch", trigger=inngest.TriggerEvent(event="go"), retries=0)
    async def fn(ctx: inngest.Context) -> object:
        value: Any = await ctx.step.run(
            "fetch", lambda: {"amount": 5} if shape == "dict" else "five"
        )
        await ctx.step.sleep("long", 86_400_000)
        return value if shape == "dict" else value.upper()

    return fn


async def test_runs_and_steps_record_the_app_version(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="deploys", app_version="v1")
    clock = inngest.ManualClock()
    async with make_engine(client, [fetching(client, "dict")], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    assert done.app_version == "v1"
    assert [(h.user_id, h.app_version) for h in history] == [("fetch", "v1"), ("long", "v1")]


async def test_an_error_after_replaying_an_older_versions_results_names_them(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="deploys", app_version="v1")
    clock = inngest.ManualClock()
    async with make_engine(client, [fetching(client, "dict")], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")

    client = inngest.Client(app_id="deploys", app_version="v2")
    async with make_engine(client, [fetching(client, "str")], clock=clock) as engine:
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Failed"
    assert done.error is not None
    message = done.error["message"]
    assert "'dict' object has no attribute 'upper'" in message
    assert (
        "this call replayed results recorded by an earlier version of the app: "
        "'fetch' (app version 'v1'); the app now runs app version 'v2'"
    ) in message, message
    assert done.app_version == "v1"  # the version that started it
    assert [(h.user_id, h.app_version) for h in history if h.op != "FunctionError"] == [
        ("fetch", "v1"),
        ("long", "v2"),
    ]


async def test_an_app_without_a_version_adds_no_note(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="deploys")
    clock = inngest.ManualClock()
    async with make_engine(client, [fetching(client, "dict")], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
    client = inngest.Client(app_id="deploys")
    async with make_engine(client, [fetching(client, "str")], clock=clock) as engine:
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "Failed"
    assert done.error is not None
    assert "replayed results" not in done.error["message"]
    assert done.app_version is None


async def test_the_code_changed_note_names_the_app_versions(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="deploys", app_version="2026-11-01")
    clock = inngest.ManualClock()
    async with make_engine(client, [three_steps(client, ["a", "b", "c"])], clock=clock) as engine:
        [event_id] = await engine.send(inngest.Event(name="go"))
        [run] = await engine.runs(event_id)
        await wait_for_job(engine, run.id, "sleep")
    client = inngest.Client(app_id="deploys", app_version="2026-12-01")
    async with make_engine(client, [three_steps(client, ["a", "c"])], clock=clock) as engine:
        clock.advance(86_401)
        done = await engine.wait(run.id, timeout=5)
        history = await engine.history(run.id)
    assert done.status == "Completed", done.error
    [message] = code_changed(history)
    assert (
        "the recorded step(s) 'b' (recorded by app version '2026-11-01'; "
        "the app now runs '2026-12-01')"
    ) in message, message
