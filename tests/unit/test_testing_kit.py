"""mainspring.testing.trigger (and its reference-named home mainspring.experimental.mocked):
functions run to their end in this process, with step stubs, and none of the reference's
limitations (a)-(d) of sdk-api.md §1.14."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mainspring as inngest
from mainspring import testing
from mainspring.experimental import mocked
from mainspring.experimental.mocked.errors import UnstubbedStepError
from mainspring.sdk.sending import HttpEventSender

client = inngest.Inngest(app_id="my-app")
client_mock = mocked.Inngest(app_id="test")
GO = inngest.Event(name="test")
FAKE = "0" * 26


def on(fn_id: str, **options: Any) -> Callable[[Any], inngest.Function[Any]]:
    """A function of the app's real client, triggered by ``test``."""
    return client.create_function(
        fn_id=fn_id, trigger=inngest.TriggerEvent(event="test"), **options
    )


# -- the reference's own scenarios, ported by changing the import ----------------------------


def test_the_reference_names_are_the_testing_kit() -> None:
    assert mocked.trigger is testing.trigger
    assert mocked.Inngest is testing.Inngest
    assert mocked.Status.COMPLETED.value == "Completed"
    assert mocked.Status.FAILED.value == "Failed"
    assert UnstubbedStepError is testing.UnstubbedStepError
    assert mocked.Timeout is testing.Timeout


def test_async_parallel_group_keeps_the_tuple() -> None:
    @on("par")
    async def fn(ctx: inngest.Context) -> tuple[str, ...]:
        async def foo(value: str) -> str:
            return value

        return await ctx.group.parallel(
            (lambda: ctx.step.run("a", foo, "a"), lambda: ctx.step.run("b", foo, "b"))
        )

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED
    assert res.output == ("a", "b")
    assert res.error is None


def test_sync_parallel_group() -> None:
    @on("par-sync")
    def fn(ctx: inngest.ContextSync) -> tuple[str, ...]:
        return ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: "a"), lambda: ctx.step.run("b", lambda: "b"))
        )

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED
    assert res.output == ("a", "b")


def test_race_group_with_several_steps_per_branch() -> None:
    @on("race")
    async def fn(ctx: inngest.Context) -> tuple[str, ...]:
        async def branch(name: str) -> str:
            first = await ctx.step.run(f"{name}-1", lambda: name)
            return await ctx.step.run(f"{name}-2", lambda: first * 2)

        return await ctx.group.parallel(
            (lambda: branch("x"), lambda: branch("y")), parallel_mode=inngest.ParallelMode.RACE
        )

    assert mocked.trigger(fn, GO, client_mock).output == ("xx", "yy")


def test_asyncio_gather_of_steps() -> None:
    ran: list[str] = []

    @on("gather")
    async def fn(ctx: inngest.Context) -> list[int]:
        def step(n: int) -> int:
            ran.append(f"s{n}")
            return n * 10

        values = await asyncio.gather(*(ctx.step.run(f"s{n}", step, n) for n in range(3)))
        return list(values)

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED
    assert res.output == [0, 10, 20]
    assert sorted(ran) == ["s0", "s1", "s2"]  # each handler ran once


def test_sequential_steps_sleep_and_no_steps() -> None:
    @on("steps")
    def fn(ctx: inngest.ContextSync) -> str:
        ctx.step.run("a", lambda: None)
        ctx.step.sleep("nap", datetime.timedelta(days=3))  # ends at once
        ctx.step.run("b", lambda: None)
        return "hi"

    @on("none")
    def bare(ctx: inngest.ContextSync) -> str:
        return "hi"

    assert mocked.trigger(fn, GO, client_mock).output == "hi"
    assert mocked.trigger(bare, GO, client_mock).output == "hi"


def test_send_event_step_gets_one_fake_id_per_event() -> None:
    @on("send-step")
    def fn(ctx: inngest.ContextSync) -> list[str]:
        return ctx.step.send_event("a", [inngest.Event(name="e-1"), inngest.Event(name="e-2")])

    res = mocked.trigger(fn, GO, client_mock)
    assert res.output == [FAKE, FAKE]
    assert [e.name for e in res.sent_events] == ["e-1", "e-2"]


def test_invoke_and_wait_take_their_stubs() -> None:
    @on("waits")
    async def fn(ctx: inngest.Context) -> Any:
        got = await ctx.step.wait_for_event("w", event="other", timeout=datetime.timedelta(days=3))
        assert got is not None
        invoked = await ctx.step.invoke_by_id("i", app_id="foo", function_id="bar")
        return [got.data, invoked]

    stubs = {"w": inngest.Event(name="other", data={"foo": 1}), "i": "hi"}
    res = mocked.trigger(fn, GO, client_mock, step_stubs=stubs)
    assert res.status is mocked.Status.COMPLETED
    assert res.output == [{"foo": 1}, "hi"]
    # A mapping of an event is accepted too.
    res = mocked.trigger(fn, GO, client_mock, step_stubs={**stubs, "w": {"name": "other"}})
    assert res.output == [{}, "hi"]


def test_timeout_stubs_a_wait_that_timed_out_and_an_invoke_that_did() -> None:
    @on("timeouts")
    def fn(ctx: inngest.ContextSync) -> str:
        assert ctx.step.wait_for_event("w", event="other", timeout=1000) is None
        try:
            ctx.step.invoke_by_id("i", function_id="bar")
        except inngest.StepError as err:
            return err.name
        return "not raised"

    res = mocked.trigger(fn, GO, client_mock, step_stubs={"w": mocked.Timeout, "i": mocked.Timeout})
    assert res.output == "InngestInvokeTimeoutError"


@pytest.mark.parametrize("kind", ["wait", "invoke"])
def test_waits_and_invokes_must_be_stubbed(kind: str) -> None:
    @on("must-stub")
    def fn(ctx: inngest.ContextSync) -> None:
        if kind == "wait":
            ctx.step.wait_for_event("a", event="other", timeout=1000)
        else:
            ctx.step.invoke_by_id("a", function_id="bar")

    with pytest.raises(UnstubbedStepError, match="'a' is not stubbed") as raised:
        mocked.trigger(fn, GO, client_mock)
    assert raised.value.step_id == "a"


def test_ai_infer_must_be_stubbed() -> None:
    class Adapter:
        def auth_key(self) -> str:
            return "key"

        def format(self) -> str:
            return "openai-chat"

        def headers(self) -> dict[str, str]:
            return {}

        def on_call(self, body: dict[str, Any]) -> None:
            pass

        def url_infer(self) -> str:
            return "https://model.invalid/v1/chat"

    adapter: Any = Adapter()

    @on("ai")
    async def fn(ctx: inngest.Context) -> object:
        return await ctx.step.ai.infer("ask", adapter=adapter, body={"messages": []})

    with pytest.raises(UnstubbedStepError, match=r"ai\.infer 'ask'"):
        mocked.trigger(fn, GO, client_mock)
    answer = {"choices": [{"message": {"content": "hi"}}]}
    assert mocked.trigger(fn, GO, client_mock, step_stubs={"ask": answer}).output == answer


def test_function_level_retry_then_failure() -> None:
    calls: list[int] = []

    @on("retry-fn")
    def flaky(ctx: inngest.ContextSync) -> str:
        calls.append(ctx.attempt)
        if len(calls) < 2:
            raise RuntimeError("oh no")
        return "hi"

    @on("fail-fn", retries=0)
    def failing(ctx: inngest.ContextSync) -> None:
        raise RuntimeError("oh no")

    assert mocked.trigger(flaky, GO, client_mock).output == "hi"
    assert calls == [0, 1]
    res = mocked.trigger(failing, GO, client_mock)
    assert res.status is mocked.Status.FAILED
    assert res.output is None
    assert isinstance(res.error, RuntimeError)
    assert str(res.error) == "oh no"


# -- (a) a failing step raises StepError into user code ---------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
def test_a_failed_step_raises_step_error_the_function_can_catch(is_async: bool) -> None:
    def boom() -> None:
        raise ValueError("oh no")

    if is_async:

        @on("catch", retries=0)
        async def fn(ctx: inngest.Context) -> str:
            try:
                await ctx.step.run("a", boom)
            except inngest.StepError as err:
                return f"caught {err.name}: {err.message}"
            return "not raised"

    else:

        @on("catch", retries=0)
        def fn(ctx: inngest.ContextSync) -> str:
            try:
                ctx.step.run("a", boom)
            except inngest.StepError as err:
                return f"caught {err.name}: {err.message}"
            return "not raised"

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED, res.error
    assert res.output == "caught ValueError: oh no"


def test_an_uncaught_step_failure_fails_the_run_with_step_error() -> None:
    @on("uncaught", retries=0)
    def fn(ctx: inngest.ContextSync) -> None:
        ctx.step.run("a", lambda: int("x"))

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.FAILED
    assert isinstance(res.error, inngest.StepError)
    assert res.error.name == "ValueError"


def test_a_non_retriable_step_error_is_not_retried() -> None:
    calls: list[int] = []

    def give_up() -> None:
        calls.append(1)
        raise inngest.NonRetriableError("no point")

    @on("non-retriable")
    async def fn(ctx: inngest.Context) -> str:
        try:
            await ctx.step.run("a", give_up)
        except inngest.StepError as err:
            return err.message
        return "not raised"

    assert mocked.trigger(fn, GO, client_mock).output == "no point"
    assert calls == [1]


def test_an_exception_stub_fails_the_step() -> None:
    @on("stub-error")
    async def fn(ctx: inngest.Context) -> str:
        try:
            await ctx.step.invoke_by_id("charge", function_id="card")
        except inngest.StepError as err:
            return f"{err.name}: {err.message}"
        return "not raised"

    res = mocked.trigger(fn, GO, client_mock, step_stubs={"charge": KeyError("declined")})
    assert res.output == "KeyError: 'declined'"


# -- (b) the real client's send stays in the process -----------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every send that would reach the event API is refused (and noted)."""
    attempts: list[str] = []

    async def send(self: HttpEventSender, events: Any) -> list[str]:
        attempts.append("send")
        raise AssertionError("reached the network")

    def send_sync(self: HttpEventSender, events: Any) -> list[str]:
        attempts.append("send_sync")
        raise AssertionError("reached the network")

    monkeypatch.setattr(HttpEventSender, "send", send)
    monkeypatch.setattr(HttpEventSender, "send_sync", send_sync)
    return attempts


def test_the_real_clients_send_inside_trigger_does_not_reach_the_network(
    no_network: list[str],
) -> None:
    @on("real-send-sync")
    def sync_fn(ctx: inngest.ContextSync) -> list[str]:
        ids = client.send_sync([inngest.Event(name="o-1"), inngest.Event(name="o-2")])
        return ids + ctx.step.run("in-step", lambda: client.send_sync(inngest.Event(name="o-3")))

    @on("real-send-async")
    async def async_fn(ctx: inngest.Context) -> list[str]:
        async def in_step() -> list[str]:
            return await client.send(inngest.Event(name="o-2"))

        return await client.send(inngest.Event(name="o-1")) + await ctx.step.run("s", in_step)

    res = mocked.trigger(sync_fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED, res.error
    assert res.output == [FAKE, FAKE, FAKE]
    assert [e.name for e in res.sent_events] == ["o-1", "o-2", "o-3"]
    res = mocked.trigger(async_fn, GO, client_mock)
    assert res.output == [FAKE, FAKE]
    assert [e.name for e in res.sent_events] == ["o-1", "o-2"]
    assert no_network == []


def test_outside_trigger_the_real_client_sends_as_before(no_network: list[str]) -> None:
    testing.trigger(on("noop")(lambda ctx: None), GO, client_mock)  # interception installed
    with pytest.raises(AssertionError, match="reached the network"):
        client.send_sync(inngest.Event(name="o"))
    with pytest.raises(AssertionError, match="reached the network"):
        asyncio.run(client.send(inngest.Event(name="o")))
    assert no_network == ["send_sync", "send"]


# -- (c) one event sent, one id --------------------------------------------------------------


def test_the_mock_client_gives_one_id_per_event() -> None:
    one = inngest.Event(name="e", data={"a": 1})
    assert client_mock.send_sync(one) == [FAKE]
    assert client_mock.send_sync([one, one]) == [FAKE, FAKE]
    assert asyncio.run(client_mock.send(one)) == [FAKE]


# -- (d) retries are counted per step --------------------------------------------------------


def test_every_step_has_retries_of_its_own() -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}

    @on("per-step", retries=2)
    def fn(ctx: inngest.ContextSync) -> str:
        def flaky(name: str) -> str:
            seen[name].append(ctx.attempt)
            if len(seen[name]) < 3:  # two failures each: four in the run
                raise RuntimeError(f"{name} failed")
            return name

        return ctx.step.run("a", flaky, "a") + ctx.step.run("b", flaky, "b")

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.COMPLETED, res.error
    assert res.output == "ab"
    assert seen == {"a": [0, 1, 2], "b": [0, 1, 2]}


def test_the_default_is_four_retries_as_on_the_engine() -> None:
    calls: list[int] = []

    @on("default-retries")
    async def fn(ctx: inngest.Context) -> str:
        def always() -> None:
            calls.append(ctx.attempt)
            raise RuntimeError("never")

        try:
            await ctx.step.run("a", always)
        except inngest.StepError:
            return "gave up"
        return "not raised"

    assert mocked.trigger(fn, GO, client_mock).output == "gave up"
    assert calls == [0, 1, 2, 3, 4]


# -- stubs and unstubbed steps ---------------------------------------------------------------


def test_a_stub_replaces_every_repeat_of_its_id_and_the_handler_never_runs() -> None:
    ran: list[int] = []

    @on("repeat")
    async def fn(ctx: inngest.Context) -> list[Any]:
        return [await ctx.step.run("fetch", lambda: ran.append(1)) for _ in range(3)]

    res = mocked.trigger(fn, GO, client_mock, step_stubs={"fetch": {"price": 3}})
    assert res.output == [{"price": 3}] * 3
    assert ran == []


def test_unstubbed_fail_refuses_a_step_before_its_handler_runs() -> None:
    ran: list[str] = []

    @on("strict")
    def fn(ctx: inngest.ContextSync) -> str:
        ctx.step.run("stubbed", lambda: ran.append("stubbed"))
        ctx.step.send_event("notify", inngest.Event(name="n"))  # sends stay local: allowed
        ctx.step.run("charge", lambda: ran.append("charge"))
        return "done"

    with pytest.raises(UnstubbedStepError, match="step 'charge' is not stubbed") as raised:
        mocked.trigger(fn, GO, client_mock, step_stubs={"stubbed": None}, unstubbed="fail")
    assert raised.value.step_id == "charge"
    assert ran == []
    res = mocked.trigger(fn, GO, client_mock, step_stubs={"stubbed": 1}, unstubbed="run")
    assert res.output == "done"
    assert ran == ["charge"]


def test_batches_events_and_step_values_go_through_json() -> None:
    @on("batch")
    async def fn(ctx: inngest.Context) -> Any:
        pair = await ctx.step.run("pair", lambda: (1, 2))
        return [[e.name for e in ctx.events], pair, ctx.event.data]

    events = [inngest.Event(name="test", data={"n": 1}), inngest.Event(name="test")]
    # As on a real run, a step's value reaches the function through JSON: a list.
    assert mocked.trigger(fn, events, client_mock).output == [["test", "test"], [1, 2], {"n": 1}]


def test_unserializable_output_fails_the_run_as_the_engine_would() -> None:
    @on("unserializable")
    def fn(ctx: inngest.ContextSync) -> object:
        return object()

    res = mocked.trigger(fn, GO, client_mock)
    assert res.status is mocked.Status.FAILED
    assert isinstance(res.error, testing.RunFailedError)
    assert res.error.error_code == "output_unserializable"


def test_what_trigger_refuses() -> None:
    @on("plain")
    def fn(ctx: inngest.ContextSync) -> None:
        ctx.step.run("a", lambda: None)

    with pytest.raises(ValueError, match="at least one event"):
        mocked.trigger(fn, [], client_mock)
    with pytest.raises(TypeError, match="not a mainspring Function"):
        mocked.trigger(lambda ctx: None, GO, client_mock)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unstubbed must be"):
        mocked.trigger(fn, GO, client_mock, unstubbed="skip")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Timeout stubs only wait_for_event and invoke"):
        mocked.trigger(fn, GO, client_mock, step_stubs={"a": mocked.Timeout})


# -- in async tests --------------------------------------------------------------------------


async def test_trigger_async_runs_on_the_callers_loop() -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()  # bound to this loop: usable from the function

    @on("on-loop")
    async def fn(ctx: inngest.Context) -> str:
        gate.set()
        return await ctx.step.run("a", lambda: "ran")

    res = await testing.trigger_async(fn, GO, client_mock)
    assert res.output == "ran"
    assert gate.is_set()
    assert asyncio.get_running_loop() is loop


async def test_trigger_from_an_async_test_uses_a_loop_of_its_own() -> None:
    threads: list[str] = []

    @on("off-loop")
    async def fn(ctx: inngest.Context) -> str:
        threads.append(threading.current_thread().name)
        return "ran"

    assert testing.trigger(fn, GO, client_mock).output == "ran"
    assert threads != [threading.current_thread().name]


async def test_an_unstubbed_error_leaves_nothing_running() -> None:
    @on("left")
    async def fn(ctx: inngest.Context) -> None:
        await asyncio.gather(
            ctx.step.run("a", lambda: 1),
            ctx.step.wait_for_event("w", event="x", timeout=1000),
        )

    before = len(asyncio.all_tasks())
    with pytest.raises(UnstubbedStepError):
        await testing.trigger_async(fn, GO, client_mock)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


def test_an_unstubbed_error_in_a_sync_function_ends_its_thread() -> None:
    @on("left-sync")
    def fn(ctx: inngest.ContextSync) -> None:
        ctx.group.parallel(
            (
                lambda: ctx.step.run("a", lambda: 1),
                lambda: ctx.step.wait_for_event("w", event="x", timeout=1000),
            )
        )

    before = set(threading.enumerate())  # other tests' threads are not this run's
    with pytest.raises(UnstubbedStepError):
        mocked.trigger(fn, GO, client_mock)
    deadline = time.monotonic() + 2
    while any(t.name.startswith("mainspring-run-") for t in set(threading.enumerate()) - before):
        assert time.monotonic() < deadline, "the function's thread is still blocked"
        time.sleep(0.01)


# -- layering --------------------------------------------------------------------------------


def test_trigger_never_loads_the_engine() -> None:
    # At run time: the package's lazy names keep the time machine (and the engine) out.
    code = (
        "import sys, mainspring.testing, mainspring.experimental.mocked\n"
        "print(sorted(m for m in sys.modules if m.startswith('mainspring.engine')))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
