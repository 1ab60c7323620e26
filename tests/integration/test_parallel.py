"""Parallel steps on the embedded engine: the seed's examples and protocol §7's orders.

Each scenario is written once for async functions and once for sync ones where the sync
API allows it; request counts check the executor's scheduling against protocol §7 and the
reference SDK's transcript (sdk-api §2.6).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import typing

import pytest

import mainspring as inngest
from tests.conftest import EngineFactory, log_calls, run_to_end

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def make_engine(make_engine: EngineFactory) -> EngineFactory:
    """Engines that keep protocol §7's shape for our SDK too (a plan, then a call per
    planned step), whose request counts these tests check; ``test_parallel_plans.py``
    runs the same kinds of groups as plans run in one call."""

    def factory(
        client: inngest.Client,
        functions: typing.Sequence[inngest.Function[typing.Any]],
        **options: typing.Any,
    ) -> typing.Any:
        options.setdefault("parallel_plans", False)
        return make_engine(client, functions, **options)

    return factory


class Recorder:
    """Thread-safe log of handler calls, in call order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def hit(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def count(self, name: str) -> int:
        return self.calls.count(name)


# -- the seed, verbatim apart from the handlers ------------------------------------


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_seed_running_two_steps_in_parallel(make_engine: EngineFactory, flavour: str) -> None:
    client = inngest.Client(app_id="seed")
    rec = Recorder()

    def update_user(user_id: int) -> dict[str, int]:
        rec.hit("update-user")
        return {"id": user_id, "updated": 1}

    def send_email(user_id: int) -> str:
        rec.hit("send-email")
        return f"sent:{user_id}"

    if flavour == "async":

        @client.create_function(fn_id="my-function", trigger=inngest.TriggerEvent(event="my-event"))
        async def fn(ctx: inngest.Context) -> list[object]:
            user_id = ctx.event.data["user_id"]
            (updated_user, sent_email) = await ctx.group.parallel(
                (
                    lambda: ctx.step.run("update-user", update_user, user_id),
                    lambda: ctx.step.run("send-email", send_email, user_id),
                )
            )
            return [updated_user, sent_email]

    else:

        @client.create_function(fn_id="my-function", trigger=inngest.TriggerEvent(event="my-event"))
        def fn(ctx: inngest.ContextSync) -> list[object]:
            user_id = ctx.event.data["user_id"]
            (updated_user, sent_email) = ctx.group.parallel(
                (
                    lambda: ctx.step.run("update-user", update_user, user_id),
                    lambda: ctx.step.run("send-email", send_email, user_id),
                )
            )
            return [updated_user, sent_email]

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="my-event", data={"user_id": 42}))
    assert run.status == "Completed", run.error
    assert run.output == [{"id": 42, "updated": 1}, "sent:42"]
    assert rec.count("update-user") == 1
    assert rec.count("send-email") == 1
    # 1 discovery plans both, 2 targeted runs, 1 discovery returns.
    assert log.discoveries == 2
    assert log.targeted == 2


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_seed_dynamic_tuple_of_25_users(make_engine: EngineFactory, flavour: str) -> None:
    client = inngest.Client(app_id="seed")
    rec = Recorder()

    async def update_user_async(user_id: int) -> bool:
        rec.hit(f"u{user_id}")
        return user_id % 2 == 0

    def update_user_sync(user_id: int) -> bool:
        rec.hit(f"u{user_id}")
        return user_id % 2 == 0

    if flavour == "async":

        @client.create_function(fn_id="my-function", trigger=inngest.TriggerEvent(event="my-event"))
        async def fn(ctx: inngest.Context) -> list[bool]:
            parallel_steps = tuple[typing.Callable[[], typing.Awaitable[bool]]]()
            for user_id in ctx.event.data["user_ids"]:
                parallel_steps += tuple(
                    [
                        functools.partial(
                            ctx.step.run,
                            f"get-user-{user_id}",
                            functools.partial(update_user_async, user_id),
                        )
                    ]
                )
            updated_users = await ctx.group.parallel(parallel_steps)
            return list(updated_users)

    else:

        @client.create_function(fn_id="my-function", trigger=inngest.TriggerEvent(event="my-event"))
        def fn(ctx: inngest.ContextSync) -> list[bool]:
            parallel_steps = tuple[typing.Callable[[], bool]]()
            for user_id in ctx.event.data["user_ids"]:
                parallel_steps += tuple(
                    [
                        functools.partial(
                            ctx.step.run,
                            f"get-user-{user_id}",
                            functools.partial(update_user_sync, user_id),
                        )
                    ]
                )
            updated_users = ctx.group.parallel(parallel_steps)
            return list(updated_users)

    users = list(range(25))
    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="my-event", data={"user_ids": users}))
    assert run.status == "Completed", run.error
    assert run.output == [u % 2 == 0 for u in users]
    assert sorted(rec.calls) == sorted(f"u{u}" for u in users)  # each exactly once
    assert log.targeted == 25
    assert log.discoveries == 2


# -- wait and race modes: branch orders and request counts (protocol §7, sdk-api §2.6) --


def _two_branch_function(
    client: inngest.Client, flavour: str, mode: inngest.ParallelMode, rec: Recorder
) -> inngest.Function[typing.Any]:
    """Branch a: a.1, a.2 fast; branch b: b.1, b.2 slow."""

    def work(name: str, delay: float) -> str:
        rec.hit(name)
        time.sleep(delay)
        return name

    if flavour == "async":

        async def awork(name: str, delay: float) -> str:
            rec.hit(name)
            await asyncio.sleep(delay)
            return name

        @client.create_function(fn_id="branches", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[object]:
            async def branch_a() -> list[str]:
                return [
                    await ctx.step.run("a.1", awork, "a.1", 0.0),
                    await ctx.step.run("a.2", awork, "a.2", 0.0),
                ]

            async def branch_b() -> list[str]:
                return [
                    await ctx.step.run("b.1", awork, "b.1", 0.15),
                    await ctx.step.run("b.2", awork, "b.2", 0.15),
                ]

            result = await ctx.group.parallel((branch_a, branch_b), parallel_mode=mode)
            return list(result)

        return fn

    @client.create_function(fn_id="branches", trigger=inngest.TriggerEvent(event="go"))
    def sfn(ctx: inngest.ContextSync) -> list[object]:
        def branch_a() -> list[str]:
            return [
                ctx.step.run("a.1", work, "a.1", 0.0),
                ctx.step.run("a.2", work, "a.2", 0.0),
            ]

        def branch_b() -> list[str]:
            return [
                ctx.step.run("b.1", work, "b.1", 0.15),
                ctx.step.run("b.2", work, "b.2", 0.15),
            ]

        result = ctx.group.parallel((branch_a, branch_b), parallel_mode=mode)
        return list(result)

    return sfn


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_wait_mode_advances_branches_in_lockstep(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="modes")
    rec = Recorder()
    fn = _two_branch_function(client, flavour, inngest.ParallelMode.WAIT, rec)
    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [["a.1", "a.2"], ["b.1", "b.2"]]
    assert rec.calls == ["a.1", "b.1", "a.2", "b.2"]
    # 2 plans + 4 step runs + 1 final discovery.
    assert len(log.calls) == 7


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_race_mode_lets_the_fast_branch_run_ahead(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="modes")
    rec = Recorder()
    fn = _two_branch_function(client, flavour, inngest.ParallelMode.RACE, rec)
    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [["a.1", "a.2"], ["b.1", "b.2"]]
    assert rec.calls == ["a.1", "b.1", "a.2", "b.2"] or rec.calls[:3] == ["a.1", "b.1", "a.2"]
    assert rec.calls.index("a.2") < rec.calls.index("b.2")
    # a.2 starts while b.1 is still running: it did not wait for the whole group.
    assert log.targeted == 4
    # 1 plan + 4 step runs + a discovery after each of the 4 completions.
    assert len(log.calls) == 9


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_nested_groups(make_engine: EngineFactory, flavour: str) -> None:
    client = inngest.Client(app_id="nested")
    rec = Recorder()

    def val(name: str) -> str:
        rec.hit(name)
        return name

    if flavour == "async":

        @client.create_function(fn_id="nested", trigger=inngest.TriggerEvent(event="go"))
        async def fn(ctx: inngest.Context) -> list[object]:
            outer = await ctx.group.parallel(
                (
                    lambda: ctx.step.run("a", val, "a"),
                    lambda: ctx.group.parallel(
                        (lambda: ctx.step.run("b", val, "b"), lambda: ctx.step.run("c", val, "c"))
                    ),
                )
            )
            return [outer[0], list(outer[1])]

    else:

        @client.create_function(fn_id="nested", trigger=inngest.TriggerEvent(event="go"))
        def fn(ctx: inngest.ContextSync) -> list[object]:
            outer = ctx.group.parallel(
                (
                    lambda: ctx.step.run("a", val, "a"),
                    lambda: ctx.group.parallel(
                        (lambda: ctx.step.run("b", val, "b"), lambda: ctx.step.run("c", val, "c"))
                    ),
                )
            )
            return [outer[0], list(outer[1])]

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == ["a", ["b", "c"]]
    assert sorted(rec.calls) == ["a", "b", "c"]
    # The inner plan merges into the outer one: one discovery plans all three.
    assert log.targeted == 3
    assert log.discoveries == 2


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_exhausted_branch_raises_step_error_that_user_code_catches(
    make_engine: EngineFactory, flavour: str
) -> None:
    client = inngest.Client(app_id="errors")
    rec = Recorder()

    def flaky() -> str:
        rec.hit("flaky")
        raise ValueError("boom")

    def fine() -> str:
        rec.hit("fine")
        return "ok"

    if flavour == "async":

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        async def fn(ctx: inngest.Context) -> dict[str, str]:
            try:
                await ctx.group.parallel(
                    (lambda: ctx.step.run("flaky", flaky), lambda: ctx.step.run("fine", fine))
                )
            except inngest.StepError as err:
                return {"caught": err.name, "message": err.message}
            return {"caught": "nothing"}

    else:

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="go"), retries=2)
        def fn(ctx: inngest.ContextSync) -> dict[str, str]:
            try:
                ctx.group.parallel(
                    (lambda: ctx.step.run("flaky", flaky), lambda: ctx.step.run("fine", fine))
                )
            except inngest.StepError as err:
                return {"caught": err.name, "message": err.message}
            return {"caught": "nothing"}

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == {"caught": "ValueError", "message": "boom"}
    assert rec.count("flaky") == 3  # retries=2: three attempts
    assert rec.count("fine") == 1


# -- asyncio.gather and TaskGroup behave like group.parallel --------------------------


async def test_asyncio_gather_of_ten_steps_is_one_planned_group(
    make_engine: EngineFactory,
) -> None:
    client = inngest.Client(app_id="gather")
    rec = Recorder()

    async def work(i: int) -> int:
        rec.hit(f"s{i}")
        return i * i

    @client.create_function(fn_id="g", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[int]:
        squares = await asyncio.gather(*(ctx.step.run(f"s{i}", work, i) for i in range(10)))
        total = await ctx.step.run("sum", lambda: sum(squares))
        return [*squares, total]

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [i * i for i in range(10)] + [285]
    assert sorted(rec.calls) == sorted(f"s{i}" for i in range(10))
    # One discovery planned all ten; ten targeted runs; one discovery ran "sum" at once
    # and reported the output with it.
    assert log.targeted == 10
    assert log.discoveries == 2


async def test_task_group_over_steps_is_one_planned_group(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="taskgroup")
    rec = Recorder()

    async def work(name: str) -> str:
        rec.hit(name)
        return name.upper()

    @client.create_function(fn_id="tg", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[str]:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(ctx.step.run(n, work, n)) for n in ("x", "y", "z")]
        return [t.result() for t in tasks]

    async with make_engine(client, [fn]) as engine:
        log = log_calls(engine)
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == ["X", "Y", "Z"]
    assert sorted(rec.calls) == ["x", "y", "z"]
    assert log.targeted == 3
    assert log.discoveries == 2


async def test_gather_of_branches_with_sequential_steps(make_engine: EngineFactory) -> None:
    client = inngest.Client(app_id="gather2")
    rec = Recorder()

    async def work(name: str) -> str:
        rec.hit(name)
        return name

    @client.create_function(fn_id="g", trigger=inngest.TriggerEvent(event="go"))
    async def fn(ctx: inngest.Context) -> list[list[str]]:
        async def branch(prefix: str) -> list[str]:
            first = await ctx.step.run(f"{prefix}1", work, f"{prefix}1")
            second = await ctx.step.run(f"{prefix}2", work, f"{prefix}2")
            return [first, second]

        return list(await asyncio.gather(branch("a"), branch("b"), branch("c")))

    async with make_engine(client, [fn]) as engine:
        run = await run_to_end(engine, inngest.Event(name="go"))
    assert run.status == "Completed", run.error
    assert run.output == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]
    assert sorted(rec.calls) == ["a1", "a2", "b1", "b2", "c1", "c2"]
    # Lockstep: every first step ran before any second step.
    assert max(rec.calls.index(f"{p}1") for p in "abc") < min(
        rec.calls.index(f"{p}2") for p in "abc"
    )
