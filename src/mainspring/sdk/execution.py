"""The replay core: run a function against its memos and answer one call request.

Given the function, its events, the memo map, the run context and an optional target
step, an :class:`Execution` runs the handler and answers *complete(value)*, *ops[...]* or
*failure* (protocol §4, §5, §7.1). It does no I/O of its own; every transport shares it.

How it differs from an interrupt-based SDK: a step call that has no memo does not unwind
the function. It registers itself and *suspends*. Once the function is blocked only on
steps (see :mod:`mainspring.sdk.tasks`), everything registered is the batch to report.
That is what lets ``asyncio.gather`` plan steps together, and it lets a transport keep the
suspended execution and resume it with the next memos instead of replaying from the top
(:meth:`Execution.accepts`). A transport that cannot keep it calls :meth:`abandon`, which
unwinds the function with ``asyncio.CancelledError`` (async) or an internal
``BaseException`` (sync) that ``except Exception:`` cannot swallow.

What a blocked function answers (a lone ``step.run`` runs at once, anything else is
reported; targets and chains) is laid out in ``docs/execution-model.md``.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import inspect
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from mainspring.errors import NonRetriableError, RetryAfterError
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import (
    MISSING,
    CallRequest,
    CallResponse,
    Complete,
    ErrorPayload,
    Failure,
    Ops,
    StepOp,
)
from mainspring.protocol.opcodes import Opcode
from mainspring.protocol.step_ids import StepIdCounter
from mainspring.sdk.context import build_context
from mainspring.sdk.drift import ReplayNotes, with_drift
from mainspring.sdk.event import Event
from mainspring.sdk.middleware_calls import CallMiddleware, MiddlewareFailure
from mainspring.sdk.ops import PENDING, Registration, StepSpec, unwrap
from mainspring.sdk.outcomes import (
    await_any,
    call_handler_sync,
    final_failure,
    function_failure,
    nested_step,
    settle,
    unserializable,
)
from mainspring.sdk.plans import run_together, runs_together, sync_capacity
from mainspring.sdk.scopes import (
    BRANCH_ROUND,
    PARALLEL_SCOPE,
    AbandonedInterrupt,
    BranchSuspend,
    NestedStepInterrupt,
)
from mainspring.sdk.serialize import UnserializableError, dump_json, error_payload
from mainspring.sdk.tasks import (
    CURRENT_TRACKER,
    IN_STEP,
    StepFuture,
    TaskTracker,
    install_task_factory,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from mainspring.sdk.client import Client
    from mainspring.sdk.function import Function

#: The execution whose function body is running in this context.
CURRENT_EXECUTION: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "mainspring_execution", default=None
)

# How long to wait for a function busy on non-step awaits before looking again. A safety
# net only: registrations and task completions wake the core immediately.
_POLL_SECONDS = 0.05

#: A chain of steps answers once its outputs reach this size, whatever its time budget.
_CHAIN_MAX_BYTES = 1 << 20


class Execution:
    """One run of one function, alive across the call requests it answers."""

    def __init__(
        self,
        function: Function[Any],
        client: Client,
        request: CallRequest,
        *,
        step_executor: Executor | None = None,
        report_completion: bool = False,
        chain_seconds: float | None = None,
        parallel_plans: bool = False,
    ) -> None:
        self.function = function
        self.client = client
        self.run_id = request.ctx.run_id
        self.is_async = function.is_handler_async
        self._step_executor = step_executor
        #: After running a lone step, report the function's return in the same response
        #: (``RunComplete``); for executors that record both atomically (ours).
        self._report_completion = report_completion
        #: With ``report_completion``: how long a call may go on running lone steps one
        #: after another before answering (None: one step per call).
        self._chain_seconds = chain_seconds
        #: With ``report_completion``: run a plan of ``step.run`` steps in the call that
        #: found it, side by side (``sdk/plans.py``), instead of reporting it. Set per
        #: call: the executor offers it only where flow control allows.
        self.parallel_plans = parallel_plans and report_completion
        #: How many sync steps run at once (None: async, tasks without limit).
        self._side_by_side = None if self.is_async else sync_capacity(step_executor)
        self._loop = asyncio.get_running_loop()
        self._counter = StepIdCounter()
        self._pending: dict[str, Registration] = {}
        self._seq = 0
        self._memos = request.steps
        #: What the function did with the recorded steps (drift: sdk/drift.py).
        self._replay = ReplayNotes(request.ctx, client.app_version)
        self._stack: Sequence[str] = request.ctx.stack
        self._known = len(request.ctx.stack)
        # Stack-order replay: memoized steps resolve in the order they completed.
        self._positions: dict[str, int] | None = None
        self._turn = 0
        self._turn_waiters: dict[int, asyncio.Future[Any]] = {}
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._abandoned = False
        self._root: asyncio.Future[Any] | None = None
        self._root_context: contextvars.Context | None = None
        self._tracker = TaskTracker(self._wakeup.set)
        # Only a sync function's thread waits on it; async executions share a dummy.
        self._cond = threading.Condition() if not self.is_async else _UNUSED_CONDITION
        self._thread_blocked = False
        #: Steps whose result this execution handed to the function as soon as it ran
        #: them (see :meth:`_run_chain`), by hashed id: their memos arrive with a later
        #: request and must not be handed out twice; until then a sync group that re-runs
        #: its branches reads the results here.
        self._early: dict[str, Any] = {}
        self.attempt = request.ctx.attempt
        self.max_attempts = request.ctx.max_attempts
        #: Requests being answered right now; a busy execution is never evicted.
        self.busy = 0
        #: The app's and the function's middleware, for the call being answered.
        self._middleware = CallMiddleware(client, function)
        events = [Event.from_wire(e) for e in request.events] or [Event.from_wire(request.event)]
        self.context = build_context(self, events)

    # -- state the step API reads ---------------------------------------------------

    @property
    def replaying(self) -> bool:
        """True while the function is still re-running steps it has memos for."""
        return self._turn < self._known

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this execution runs on (and must be called from)."""
        return self._loop

    @property
    def finished(self) -> bool:
        return self._root is not None and self._root.done()

    def accepts(self, request: CallRequest) -> bool:
        """Can this (suspended) execution answer ``request`` without a replay?

        True when every result saved since the last request belongs to a step this
        execution is waiting on, or when the request targets such a step; and in both
        cases only if the executor recorded the steps this execution already handed to the
        function (a chain's): if that answer was lost, the function has gone on from
        results that do not exist, and only a replay from the request's memos is right.
        """
        if self._abandoned or self.finished or self._root is None:
            return False
        stack = request.ctx.stack
        if len(stack) < self._known:
            return False
        fresh = stack[self._known :]
        early = self._early
        if early and not early.keys() <= set(fresh):
            return False
        if request.step_id is not None:
            return request.step_id in self._pending
        pending = self._pending
        return all(step_id in pending or step_id in early for step_id in fresh)

    def abandon(self) -> None:
        """Unwind the function; later step calls keep raising."""
        if self._abandoned:
            return
        self._abandoned = True
        if self.is_async:
            self._tracker.cancel_all()
            for reg in self._pending.values():
                if reg.future is not None and not reg.future.done():
                    reg.future.cancel()
        else:
            with self._cond:
                self._cond.notify_all()
        if self.finished and not self.busy:
            self._release()

    def _release(self) -> None:
        """Drop the references that tie a finished execution into cycles (its context's
        step, group and logger point back at it; its root task's context holds it), so
        that reference counting frees a run's objects as soon as the run is dropped.
        Left to the cyclic collector, they were about 60 objects a run, promoted until a
        full collection stalled the loop for tens of milliseconds."""
        self.context = None
        self._pending.clear()  # a registration keeps its branch's context, which holds us
        self._turn_waiters.clear()
        root_context, self._root_context = self._root_context, None
        if root_context is not None and self.is_async:
            # The done root task keeps its context. (A sync function's thread may still
            # be leaving its context; the thread's reference goes when it ends.)
            root_context.run(CURRENT_EXECUTION.set, None)
            root_context.run(CURRENT_TRACKER.set, None)

    # -- answering a request --------------------------------------------------------

    async def call(self, request: CallRequest, raw_request: object = None) -> CallResponse | None:
        """Answer one call request (the first starts the function).

        Returns ``None`` when this execution cannot answer it (see :meth:`accepts`): the
        caller then abandons it and starts a fresh one, which replays. ``raw_request`` is
        the framework's request the call came in, for middleware.
        """
        self.busy += 1
        middleware = self._middleware
        try:
            if not middleware.begin(raw_request):
                return await self._call(request)
            response = await self._call(request)
            return None if response is None else await middleware.finish(response)
        except MiddlewareFailure as failed:
            return function_failure(failed.error)
        finally:
            middleware.end()
            self.busy -= 1

    async def _middleware_input(self, request: CallRequest, new_code: bool) -> None:
        await self._middleware.transform_input(request, self.context, new_code=new_code)
        if self._root is None:
            self._memos = request.steps  # the transformed copy, for the replay to come

    def _new_code_from_thread(self) -> None:
        """``before_execution`` from a sync function's thread (it waits for the loop)."""
        if self._middleware.pending:
            future = asyncio.run_coroutine_threadsafe(self._middleware.new_code(), self._loop)
            future.result()

    async def _call(self, request: CallRequest) -> CallResponse | None:
        if self._abandoned:
            return None  # dropped (and, once finished, released): a fresh one answers
        self.attempt = self.context.attempt = request.ctx.attempt
        # The call's own ids (ctx.job_id / ctx.request_id): each call of a kept run has its own.
        self.context.job_id = request.ctx.job_id or None
        self.context.request_id = request.ctx.request_id or None
        self.max_attempts = request.ctx.max_attempts
        target = request.step_id
        if target is not None and self._root is not None:
            reg = self._pending.get(target)
            if reg is not None and self.accepts(request):
                # Runs beside any discovery in progress: the handler is detached from
                # the suspended function frame.
                await self._middleware_input(request, new_code=True)
                return await self._execute(reg, request)
        async with self._lock:
            if self._root is None:
                # With recorded steps, new code starts where the replay ends (step_async,
                # step_sync); without, at once.
                await self._middleware_input(request, new_code=not request.ctx.stack)
                self._start()
            elif self.accepts(request):
                await self._middleware_input(request, new_code=True)
                self._deliver(request)
            else:
                return None
            return await self._drive(request)

    def _start(self) -> None:
        root_context = contextvars.copy_context()
        root_context.run(CURRENT_EXECUTION.set, self)
        self._root_context = root_context
        if self.is_async:
            install_task_factory(self._loop)
            root_context.run(CURRENT_TRACKER.set, self._tracker)
            handler = self.function.handler
            started = handler(self.context)
            coro = started if inspect.iscoroutine(started) else await_any(started)
            root = self._loop.create_task(coro, context=root_context)
            self._tracker.adopt(root, None)
            self._root = root
        else:
            self._root = self._loop.create_future()
            thread = threading.Thread(
                target=root_context.run,
                args=(self._run_sync_body,),
                name=f"mainspring-run-{self.run_id}",
                daemon=True,
            )
            self._thread_blocked = False
            thread.start()

    def _run_sync_body(self) -> None:
        root = self._root
        assert root is not None
        try:
            value = self.function.handler(self.context)
        except AbandonedInterrupt:
            return
        except BaseException as exc:  # reported to the core, which decides
            self._loop.call_soon_threadsafe(settle, root, None, exc)
        else:
            self._loop.call_soon_threadsafe(settle, root, value, None)
        self._loop.call_soon_threadsafe(self._wakeup.set)

    def _deliver(self, request: CallRequest) -> None:
        """Hand results saved since the last request to the steps waiting for them."""
        self._memos = request.steps
        self._replay.update(request.ctx)
        stack = request.ctx.stack
        self._stack = stack
        fresh = stack[self._known :]
        self._known = self._turn = len(stack)
        if not fresh:
            return
        self._replay.delivered(fresh)
        early = self._early
        if early:
            # Results this execution already handed out when it ran the step.
            fresh = [step_id for step_id in fresh if early.pop(step_id, MISSING) is MISSING]
        if not fresh:
            return
        if self.is_async:
            for step_id in fresh:
                reg = self._pending.pop(step_id)
                if reg.future is not None and not reg.future.done():
                    reg.future.set_result(request.steps[step_id])
        else:
            with self._cond:
                for step_id in fresh:
                    self._pending.pop(step_id).outcome = request.steps[step_id]
                self._thread_blocked = False
                self._cond.notify_all()

    async def _drive(self, request: CallRequest) -> CallResponse:
        target = request.step_id
        while True:
            root = self._root
            assert root is not None
            if root.done():
                unreached = self._replay.unreached(self._memos, self._stack[: self._known])
                return with_drift(self._finish(root), unreached)
            if target is not None and target in self._pending:
                return await self._execute(self._pending[target], request)
            if self._blocked_on_steps():
                if self._turn_waiters:
                    self._release_next_turn()
                    continue
                break
            await self._wait_for_change()
        if target is not None:
            found = ", ".join(r.spec.user_id for r in self._pending.values()) or "none"
            return final_failure(
                "StepNotFoundError",
                f"the function never reached step {target} that this request targets "
                f"(steps found: {found}); did the function change while the run was in flight?",
                ErrorCode.STEP_NOT_FOUND,
            )
        regs = list(self._pending.values())
        if not regs:
            return final_failure(
                "DeadlockError",
                "the function is waiting on steps that no longer exist",
                ErrorCode.STEP_UNEXPECTED,
            )
        # Every branch is blocked on a step: a recorded step not reached by now comes
        # (if at all) after these new ones.
        unreached = self._replay.unreached(self._memos, self._stack[: self._known])
        if not request.ctx.disable_immediate_execution:
            if len(regs) == 1 and _runs_alone(regs[0]):
                if self._report_completion:
                    return with_drift(await self._run_chain(regs, request), unreached)
                return with_drift(await self._execute(regs[0], request), unreached)
            if self._runs_plan(regs):
                return with_drift(await self._run_chain(regs, request), unreached)
        return with_drift(Ops([reg.to_op() for reg in regs]), unreached)

    async def _run_chain(self, regs: list[Registration], request: CallRequest) -> CallResponse:
        """Run a lone step now (or a parallel plan: ``sdk/plans.py``), then let the
        function go on, and report what it does next in the same response, for an
        executor that records it all atomically.

        Should the function return, its output rides along as a ``RunComplete`` op: one
        call and one store unit fewer per run. With a chain budget (``chain_seconds``,
        first attempts only), the next lone step or plan runs too, and the next, until the
        budget is spent, a step fails, or the function reaches anything else (a sleep, a
        wait, a race group). Steps come back in the order they finished, and the executor
        records them in that order. Until it does, none is recorded: a crash in between
        runs them again, which is the promise for any step not yet recorded.
        """
        deadline = self._loop.time() + (self._chain_seconds or 0.0)
        chaining = self._chain_seconds is not None and request.ctx.attempt == 0
        response = Ops([])
        size = 0
        while True:
            ran = await self._run_frontier(regs, request)
            if not isinstance(ran, Ops):
                # Not a step's outcome the executor records (an unserialisable output): a
                # chain leaves it unreported, and the next call meets the step again.
                return response if response.ops else ran
            offset = len(response.ops)
            response.ops.extend(ran.ops)
            response.plans.extend((offset + first, count) for first, count in ran.plans)
            response.retry_after = ran.retry_after
            if any(op.op is not Opcode.STEP_RUN or op.data is None for op in ran.ops):
                return response  # a step failed: its retry is a call of its own
            # The code after the steps is what the next call would run: a first attempt.
            # It gets the values a replay would (the outputs through JSON), not the objects.
            self.attempt = self.context.attempt = 0
            by_id = {reg.hashed_id: reg for reg in regs}
            outcomes = []
            for op in ran.ops:
                assert op.data is not None
                size += len(op.data)
                outcomes.append((by_id[op.id], {"data": orjson.loads(op.data)}))
            self._resolve_early(outcomes)
            root = self._root
            assert root is not None
            await self._run_until_blocked(root)
            if root.done():
                return self._with_completion(response, root, by_id[ran.ops[-1].id])
            regs = list(self._pending.values())
            if not (
                chaining
                and self._loop.time() < deadline
                and size < _CHAIN_MAX_BYTES
                and ((len(regs) == 1 and _runs_alone(regs[0])) or self._runs_plan(regs))
            ):
                return response

    def _runs_plan(self, regs: list[Registration]) -> bool:
        """Whether this call runs the plan ``regs`` itself (``sdk/plans.py``)."""
        return self.parallel_plans and runs_together(regs, side_by_side=self._side_by_side)

    async def _run_frontier(self, regs: list[Registration], request: CallRequest) -> CallResponse:
        """Run the steps the function waits on: a lone step, or a plan side by side."""
        if len(regs) == 1 and not regs[0].in_parallel:
            return await self._execute(regs[0], request)
        return await run_together(self._start_step, regs, request)

    async def _run_until_blocked(self, root: asyncio.Future[Any]) -> None:
        """Let the function run until it returns or waits only on new steps."""
        while not root.done():
            if self._blocked_on_steps():
                if not self._turn_waiters:
                    return
                self._release_next_turn()
                continue
            await self._wait_for_change()

    def _with_completion(
        self, response: Ops, root: asyncio.Future[Any], reg: Registration
    ) -> CallResponse:
        """The response with the function's output appended as ``RunComplete``; as it is
        when the function failed (the next request replays and reports the failure)."""
        if root.cancelled() or root.exception() is not None:
            return response
        try:
            output = dump_json(root.result())
        except UnserializableError:
            return response
        response.ops.append(
            StepOp(op=Opcode.RUN_COMPLETE, id=reg.hashed_id, name="", display_name="", data=output)
        )
        return response

    def _resolve_early(self, outcomes: list[tuple[Registration, Any]]) -> None:
        """Hand steps this call ran their results, in the order they finished."""
        for reg, memo in outcomes:
            self._pending.pop(reg.hashed_id, None)
            self._early[reg.hashed_id] = memo
        if self.is_async:
            for reg, memo in outcomes:
                if reg.future is not None and not reg.future.done():
                    reg.future.set_result(memo)
            return
        with self._cond:  # all at once: the thread re-runs a group's branches when it wakes
            for reg, memo in outcomes:
                reg.outcome = memo
            self._thread_blocked = False
            self._cond.notify_all()

    def _blocked_on_steps(self) -> bool:
        if self.is_async:
            return self._tracker.quiescent()
        return self._thread_blocked

    async def _wait_for_change(self) -> None:
        if self.is_async and self._tracker.any_runnable():
            await asyncio.sleep(0)
            return
        self._wakeup.clear()
        timer = self._loop.call_later(_POLL_SECONDS, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            timer.cancel()

    def _finish(self, root: asyncio.Future[Any]) -> CallResponse:
        if root.cancelled():
            return Failure(
                ErrorPayload(name="CancelledError", message="the function was cancelled")
            )
        exc = root.exception()
        if exc is None:
            try:
                return Complete(dump_json(root.result()))
            except UnserializableError as err:
                return unserializable(f"function {self.function.id!r}", err)
        return self._replay.annotate(function_failure(exc))

    # -- running one step's handler ------------------------------------------------

    def _start_step(self, reg: Registration, request: CallRequest) -> asyncio.Future[CallResponse]:
        """One planned step of a plan run side by side, as a task. In an async function the
        task runs in the step's own context, so its handler needs no task of its own: one
        task per step rather than two (a fan-out of thousands allocates, and the collector
        walks, that much less)."""
        if not self.is_async or reg.spec.handler is None:
            return self._loop.create_task(self._execute(reg, request))
        context = self._step_context(reg)
        return self._loop.create_task(self._execute(reg, request, context), context=context)

    async def _execute(
        self,
        reg: Registration,
        request: CallRequest,
        current: contextvars.Context | None = None,
    ) -> CallResponse:
        """Run ``reg``'s handler; its outcome as a response. ``current``: the step's context
        (``_step_context``), when this already runs in it (``_start_step``)."""
        spec = reg.spec
        if spec.opcode is not Opcode.STEP_RUN or spec.handler is None:
            # Only run-type steps execute in the SDK; a targeted call for another op
            # means the executor and the function disagree.
            return Ops([reg.to_op()])
        started = time.time()
        try:
            output = await self._run_handler(reg, current)
        except NestedStepInterrupt as nested:
            return nested_step(nested.user_id, spec.user_id)
        except NonRetriableError as exc:
            return Ops([reg.to_op(Opcode.STEP_FAILED, error=self._replay.note(error_payload(exc)))])
        except RetryAfterError as exc:
            return self._step_failed(reg, request, exc, retry_after=exc.retry_after)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this call is being cancelled (the engine stops, the run is dropped)
            # The handler raised it itself (an operation inside it was cancelled): that is
            # the step failing. Let through, it would end the call with no answer at all,
            # and the run would wait for a call that never comes back.
            return self._step_failed(reg, request, exc)
        except Exception as exc:
            return self._step_failed(reg, request, exc)
        try:
            data = dump_json(output)
        except UnserializableError as err:
            return unserializable(f"step {spec.user_id!r}", err)
        ran = reg.to_op(Opcode.STEP_RUN, data=data)
        if self._report_completion:  # Mainspring's executor, which reads the times
            ran.timing = (int(started * 1000), int(time.time() * 1000))
        return Ops([ran])

    def _step_failed(
        self,
        reg: Registration,
        request: CallRequest,
        exc: BaseException,
        *,
        retry_after: datetime.datetime | None = None,
    ) -> CallResponse:
        """The step's handler raised ``exc``: retried, or failed on its last attempt."""
        last = request.ctx.attempt + 1 >= request.ctx.max_attempts
        op = Opcode.STEP_FAILED if last else Opcode.STEP_ERROR
        error = self._replay.note(error_payload(exc))
        return Ops([reg.to_op(op, error=error)], retry_after=retry_after)

    @staticmethod
    def _step_context(reg: Registration) -> contextvars.Context:
        """A fresh copy of the context the step was called in, marked as inside a step: what
        the handler sets stays in this attempt."""
        context = (reg.context or contextvars.copy_context()).copy()
        context.run(IN_STEP.set, True)
        return context

    async def _run_handler(self, reg: Registration, current: contextvars.Context | None) -> Any:
        spec = reg.spec
        handler = spec.handler
        assert handler is not None
        if current is not None:  # this task runs in the step's context already
            result = handler(*spec.args)
            return await result if inspect.isawaitable(result) else result
        context = self._step_context(reg)
        if self.is_async:
            # Called here, in the step's context: a handler that is not a coroutine
            # function needs no task of its own (two loop turns fewer per step); what it
            # returns, if awaitable, is awaited in a task that runs in that context.
            result = context.run(handler, *spec.args)
            if not inspect.isawaitable(result):
                return result
            coro = result if inspect.iscoroutine(result) else await_any(result)
            return await self._loop.create_task(coro, context=context)
        return await self._loop.run_in_executor(
            self._step_executor, context.run, call_handler_sync, handler, spec.args
        )

    # -- step calls from the function body -----------------------------------------

    def _register(
        self, spec: StepSpec, hashed_id: str, index: int, *, in_parallel: bool, race: bool
    ) -> Registration:
        self._seq += 1
        reg = Registration(
            spec=spec,
            hashed_id=hashed_id,
            index=index,
            seq=self._seq,
            in_parallel=in_parallel,
            race=race,
            context=contextvars.copy_context() if spec.handler is not None else None,
        )
        self._pending[hashed_id] = reg
        return reg

    async def step_async(self, spec: StepSpec) -> Any:
        if IN_STEP.get():
            raise NestedStepInterrupt(spec.user_id)
        if self._abandoned:
            raise asyncio.CancelledError()
        hashed_id, index = self._counter.next(spec.user_id)
        memo = self._memos.get(hashed_id, MISSING)
        if memo is not MISSING:
            self._replay.consume(hashed_id, spec)
            await self._take_turn(hashed_id)
            if self._middleware.pending and not self.replaying:
                await self._middleware.new_code()  # the replay ends: what follows is new
            return unwrap(spec, memo)
        scope = PARALLEL_SCOPE.get()
        reg = self._register(
            spec,
            hashed_id,
            index,
            in_parallel=scope is not None,
            race=scope is not None and scope.race,
        )
        reg.future = future = StepFuture(loop=self._loop)
        self._wakeup.set()
        try:
            memo = await future
        except asyncio.CancelledError:
            if not self._abandoned:
                # A sibling failed and the group gave up on this branch.
                self._pending.pop(hashed_id, None)
            raise
        return unwrap(spec, memo)

    async def _take_turn(self, hashed_id: str) -> None:
        """Wait until every step that completed before this one has been handed out."""
        if self._turn >= self._known:
            return
        if self._positions is None:
            self._positions = {step_id: i for i, step_id in enumerate(self._stack[: self._known])}
        position = self._positions.get(hashed_id)
        if position is None or position < self._turn:
            return
        if position > self._turn:
            waiter: asyncio.Future[Any] = StepFuture(loop=self._loop)
            self._turn_waiters[position] = waiter
            self._wakeup.set()
            await waiter
            return
        self._advance_turn()

    def _advance_turn(self) -> None:
        self._turn += 1
        waiter = self._turn_waiters.pop(self._turn, None)
        if waiter is not None:
            waiter.set_result(None)
            self._advance_turn()

    def _release_next_turn(self) -> None:
        # The step expected next never came (a branch failed first, or the code
        # changed): hand out the earliest waiting one instead (protocol §4.4).
        position = min(self._turn_waiters)
        self._turn = position
        self._turn_waiters.pop(position).set_result(None)
        self._advance_turn()

    def step_sync(self, spec: StepSpec) -> Any:
        if IN_STEP.get():
            raise NestedStepInterrupt(spec.user_id)
        if self._abandoned:
            raise AbandonedInterrupt()
        hashed_id, index = self._counter.next(spec.user_id)
        branch = BRANCH_ROUND.get()
        if branch is not None:
            branch.counted.append(spec.user_id)
        memo = self._memos.get(hashed_id, MISSING)
        if memo is MISSING:
            # A group's step this call ran: the group re-runs its branches from results.
            # (One lookup: the loop's thread may drop the entry once the memo arrives.)
            early = self._early.get(hashed_id, MISSING)
            if early is not MISSING:
                return unwrap(spec, early)
        if memo is not MISSING:
            self._replay.consume(hashed_id, spec)
            self._turn += 1
            if self._middleware.pending and not self.replaying:
                self._new_code_from_thread()  # the replay ends: what follows is new
            return unwrap(spec, memo)
        with self._cond:
            reg = self._pending.get(hashed_id)
            if reg is None:
                reg = self._register(
                    spec,
                    hashed_id,
                    index,
                    in_parallel=branch is not None,
                    race=branch is not None and branch.race,
                )
        if branch is not None:
            branch.registrations.append(reg)
            raise BranchSuspend()
        self.block_until_any([reg])
        return unwrap(spec, reg.outcome)

    def block_until_any(self, regs: Sequence[Registration]) -> None:
        """Block the function's thread until one of ``regs`` has its memo."""
        with self._cond:
            while all(reg.outcome is PENDING for reg in regs):
                if self._abandoned:
                    raise AbandonedInterrupt()
                if not self._thread_blocked:
                    self._thread_blocked = True
                    self._loop.call_soon_threadsafe(self._wakeup.set)
                self._cond.wait()
            self._thread_blocked = False

    def forget_counts(self, user_ids: Sequence[str]) -> None:
        """Undo repeat counting of a sync group's pass before it re-runs its branches."""
        for user_id in reversed(user_ids):
            self._counter.forget(user_id)


_UNUSED_CONDITION = threading.Condition()


def _runs_alone(reg: Registration) -> bool:
    """A run-type step outside any group: the SDK runs it in the call that found it."""
    return reg.spec.opcode is Opcode.STEP_RUN and not reg.in_parallel
