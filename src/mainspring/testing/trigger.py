"""Run a function to its end in this process, with step stubs and no engine.

:func:`trigger` plays the executor's part of the protocol against the SDK's replay core
(:class:`~mainspring.sdk.execution.Execution`, kept suspended between calls by
:class:`~mainspring.sdk.live.LiveExecutions`, as the engine's in-process transport does).
Every call asks the core not to run steps on its own (``disable_immediate_execution``), so
each ``step.run`` is first reported as planned: that is where a stub takes its place, or
where ``unstubbed="fail"`` refuses it before its handler runs. Then, as the engine would:

- a planned step is called by itself and retried on error, its attempts counted on their
  own (``ctx.attempt`` is that step's attempt); once its retries are spent it is recorded
  as failed, and the function sees a :class:`~mainspring.StepError` it may catch;
- a sleep ends at once; a wait or an invoke takes its stub (see :mod:`.stubs`);
- once every reported step has a result, the function is called again (it goes on from
  where it was suspended); a function-level error is retried the same way.

Time is not simulated: retries do not wait, ``RetryAfterError`` included. For durations
on the real engine, see :mod:`mainspring.testing.time_travel`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import ulid

from mainspring.errors import MainspringError
from mainspring.protocol import consts
from mainspring.protocol.messages import (
    CallContext,
    CallRequest,
    CallResponse,
    Complete,
    ErrorPayload,
    Failure,
    StepOp,
)
from mainspring.protocol.opcodes import LAZY_OPS, Opcode
from mainspring.sdk.client import Client
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function
from mainspring.sdk.live import LiveExecutions
from mainspring.testing.sending import capture_sends
from mainspring.testing.stubs import (
    MUST_STUB,
    RunFailedError,
    Status,
    UnstubbedStepError,
    stub_memo,
)

#: The most steps one triggered run may record, as the engine's default ``step_limit``.
STEP_LIMIT = 10_000

Unstubbed = Literal["run", "fail"]


@dataclasses.dataclass
class Result:
    """How a triggered run ended.

    ``output`` is the function's return value as it returned it (a tuple stays a tuple);
    ``error`` is what failed the run: the exception the function raised (a
    :class:`~mainspring.StepError` for a step failure it did not catch), else a
    :class:`~mainspring.testing.RunFailedError`. ``sent_events`` are the events the run
    sent, with any client, in order.
    """

    status: Status
    output: Any = None
    error: BaseException | None = None
    sent_events: list[Event] = dataclasses.field(default_factory=list)


def trigger(
    fn: Function[Any],
    event: Event | list[Event],
    client: Client,
    *,
    step_stubs: Mapping[str, object] | None = None,
    unstubbed: Unstubbed = "run",
) -> Result:
    """Run ``fn`` for ``event`` (or a batch) to its end, in this process; see :mod:`.trigger`.

    ``step_stubs`` maps step ids to stand-in results (:mod:`mainspring.testing.stubs`);
    waits and invokes must have one. A ``step.run`` without a stub runs its handler, unless
    ``unstubbed="fail"``: then it raises :class:`UnstubbedStepError` naming the step.

    Called from a running event loop (an async test), the run gets a loop of its own on a
    helper thread; ``await trigger_async(...)`` runs it on the caller's loop instead.
    """
    run = trigger_async(fn, event, client, step_stubs=step_stubs, unstubbed=unstubbed)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run)
    # asyncio.run cannot nest inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run).result()


async def trigger_async(
    fn: Function[Any],
    event: Event | list[Event],
    client: Client,
    *,
    step_stubs: Mapping[str, object] | None = None,
    unstubbed: Unstubbed = "run",
) -> Result:
    """:func:`trigger` on the running event loop."""
    if not isinstance(fn, Function):
        raise TypeError(f"trigger: {fn!r} is not a mainspring Function")
    if not isinstance(client, Client):
        raise TypeError(f"trigger: {client!r} is not a mainspring Client")
    if unstubbed not in ("run", "fail"):
        raise ValueError(f"trigger: unstubbed must be 'run' or 'fail', got {unstubbed!r}")
    events = _events(event)
    with capture_sends() as sent:
        driver = _Driver(fn, client, events, dict(step_stubs or {}), unstubbed)
        try:
            result = await driver.run()
        finally:
            driver.close()
    result.sent_events = sent.events
    return result


def _events(event: Event | Sequence[Event]) -> list[Event]:
    events = [event] if isinstance(event, Event) else list(event)
    if not events:
        raise ValueError("trigger: give at least one event")
    for position, item in enumerate(events):
        if not isinstance(item, Event):
            raise TypeError(f"trigger: event {position} is {type(item).__name__}, not an Event")
    return events


class _Observed:
    """What the function's handler last returned or raised, as Python objects (the replay
    core keeps only their serialised forms)."""

    def __init__(self) -> None:
        self.output: Any = None
        self.error: BaseException | None = None


def _observing(fn: Function[Any], seen: _Observed) -> Function[Any]:
    """A copy of ``fn`` whose handler reports its outcome to ``seen``."""
    handler: Any = fn.handler
    watched = copy.copy(fn)
    if fn.is_handler_async:

        async def run_async(ctx: Any) -> Any:
            seen.error = None
            try:
                seen.output = await handler(ctx)
            except Exception as exc:  # recorded, then handled by the core as usual
                seen.error = exc
                raise
            return seen.output

        watched.handler = run_async
    else:

        def run_sync(ctx: Any) -> Any:
            seen.error = None
            try:
                seen.output = handler(ctx)
            except Exception as exc:  # recorded, then handled by the core as usual
                seen.error = exc
                raise
            return seen.output

        watched.handler = run_sync
    return watched


class _StepFailed(Exception):
    """A call for one step failed the run (its output is not JSON, a nested step)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


class _Driver:
    """The executor's side of one run: memos, the order they were saved, attempts."""

    def __init__(
        self,
        fn: Function[Any],
        client: Client,
        events: list[Event],
        stubs: dict[str, object],
        unstubbed: Unstubbed,
    ) -> None:
        self._seen = _Observed()
        self._fn = _observing(fn, self._seen)
        self._stubs = stubs
        self._unstubbed = unstubbed
        self._wire = [event.to_wire() for event in events]
        self._run_id = str(ulid.ULID())
        self._max_attempts = fn.config.max_attempts
        self._live = LiveExecutions(client, max_live=1, max_live_sync=1)
        self._memos: dict[str, Any] = {}
        self._stack: list[str] = []
        #: Attempts of each step, by hashed id: every step has retries of its own.
        self._attempts: dict[str, int] = {}

    def close(self) -> None:
        """Unwind a function left suspended (the run raised, or ended in a failure)."""
        self._live.clear()

    async def _call(self, step_id: str | None, attempt: int) -> CallResponse:
        request = CallRequest(
            fn_id=self._fn.id,
            event=self._wire[0],
            events=self._wire,
            # Copies: the core keeps what a request gave it, and this map keeps growing.
            steps=dict(self._memos),
            ctx=CallContext(
                run_id=self._run_id,
                attempt=attempt,
                max_attempts=self._max_attempts,
                stack=tuple(self._stack),
                disable_immediate_execution=True,
                fn_id=self._fn.id,
            ),
            step_id=step_id,
        )
        return await self._live.call(self._fn, request, report_completion=False, chain_seconds=None)

    async def run(self) -> Result:
        attempt = 0
        while True:
            response = await self._call(None, attempt)
            if isinstance(response, Complete):
                return Result(Status.COMPLETED, output=self._seen.output)
            if isinstance(response, Failure):
                if response.retriable and attempt + 1 < self._max_attempts:
                    attempt += 1
                    continue
                error = self._seen.error or RunFailedError(response.error)
                return Result(Status.FAILED, error=error)
            try:
                for op in response.ops:
                    await self._settle(op)
            except _StepFailed as failed:
                return Result(Status.FAILED, error=RunFailedError(failed.failure.error))
            if len(self._stack) > STEP_LIMIT:
                return Result(
                    Status.FAILED,
                    error=MainspringError(f"the run recorded more than {STEP_LIMIT} steps"),
                )
            # The next call is a new job for the engine: its attempts start again.
            attempt = 0

    def _record(self, op: StepOp, memo: Any) -> None:
        self._memos[op.id] = memo
        self._stack.append(op.id)

    async def _settle(self, op: StepOp) -> None:
        """Give one reported step its result: a stub, its handler's outcome, or none."""
        if op.op in LAZY_OPS:
            return
        user_id = op.user_id or op.display_name
        if user_id in self._stubs:
            kind = Opcode.STEP_RUN if op.op is Opcode.STEP_PLANNED else op.op
            self._record(op, stub_memo(kind, user_id, self._stubs[user_id]))
        elif op.op is Opcode.STEP_PLANNED:
            sends = (op.opts or {}).get("type") == consts.STEP_TYPE_SEND_EVENT
            if self._unstubbed == "fail" and not sends:
                raise UnstubbedStepError(user_id)
            await self._run_step(op)
        elif op.op in (Opcode.STEP_RUN, Opcode.STEP_FAILED, Opcode.STEP_ERROR):
            await self._outcome(op)
        elif op.op is Opcode.SLEEP:
            self._record(op, None)
        elif op.op in MUST_STUB:
            raise UnstubbedStepError(user_id, MUST_STUB[op.op])
        else:
            raise UnstubbedStepError(user_id, f"{op.op.value} step")

    async def _run_step(self, op: StepOp) -> None:
        """Call the function for one planned step until it succeeds or fails for good."""
        response = await self._call(op.id, self._attempts.get(op.id, 0))
        if isinstance(response, Failure):
            raise _StepFailed(response)
        if isinstance(response, Complete):
            raise MainspringError(f"step {op.user_id!r}: the function returned when called for it")
        [ran] = [found for found in response.ops if found.id == op.id]
        await self._outcome(ran)

    async def _outcome(self, op: StepOp) -> None:
        if op.op is Opcode.STEP_RUN:
            self._record(op, {"data": None if op.data is None else orjson.loads(op.data)})
        elif op.op is Opcode.STEP_FAILED:
            error = op.error or ErrorPayload(name="Error", message="the step failed")
            self._record(op, {"error": error.to_wire()})
        elif op.op is Opcode.STEP_ERROR:
            # Retried at once: a test has no use for the backoff.
            self._attempts[op.id] = self._attempts.get(op.id, 0) + 1
            await self._run_step(op)
        else:
            raise MainspringError(f"step {op.user_id!r}: unexpected {op.op.value} when run")
