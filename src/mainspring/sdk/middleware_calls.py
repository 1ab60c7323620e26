"""Where middleware meets a call: the recorded steps on the way in, the answer on the way
out (see :mod:`mainspring.sdk.middleware` for the hooks and their order).

The replay core keeps an execution alive across call requests (``sdk/live.py``), so a
call's ``transform_input`` sees only the recorded results it has not seen yet: those of
the steps recorded since the execution's previous call, or all of them for a new
execution. A result is changed in place in the execution's memo map, where the step
calls read it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from mainspring.protocol.messages import (
    CallRequest,
    CallResponse,
    Complete,
    Ops,
    StepOp,
    memo_value,
)
from mainspring.sdk.middleware import (
    EMPTY,
    Hooks,
    Output,
    StepMemos,
    TransformOutputResult,
    TransformOutputStepInfo,
)
from mainspring.sdk.serialize import dump_json

if TYPE_CHECKING:
    from mainspring.sdk.client import Client
    from mainspring.sdk.context import Context, ContextSync
    from mainspring.sdk.function import Function


async def transform_input(
    hooks: Hooks,
    ctx: Context | ContextSync,
    function: Function[Any],
    memos: MutableMapping[str, Any],
    step_ids: Iterable[str],
) -> None:
    """Run ``transform_input`` over the context and the results of ``step_ids``, and put
    the results as changed back into ``memos``."""
    outputs: dict[str, Output] = {}
    shapes: dict[str, str] = {}
    for step_id in step_ids:
        memo = memos.get(step_id)
        kind, value = memo_value(memo)
        shapes[step_id] = kind
        if kind == "error":
            outputs[step_id] = Output(data=None, error=value)
        elif kind == "data":
            outputs[step_id] = Output(data=value)
        else:  # a sleep's null, a wait's event, an input: the memo itself
            outputs[step_id] = Output(data=memo)
    await hooks.transform_input(ctx, function, StepMemos(dict(outputs)))
    for step_id, output in outputs.items():
        kind = shapes[step_id]
        if output.error is not None:
            memos[step_id] = {"error": output.error}
        elif kind == "data" or kind == "error":
            memos[step_id] = {"data": output.data}
        else:
            memos[step_id] = output.data


async def transform_output(hooks: Hooks, response: CallResponse) -> CallResponse:
    """Run ``transform_output`` over what the answer carries: the function's return value,
    and every step it reports (each op of a parallel plan too)."""
    if not hooks.transforms_output:
        return response
    if isinstance(response, Complete):
        result = TransformOutputResult(error=None, output=orjson.loads(response.output), step=None)
        await hooks.transform_output(result)
        response.output = dump_json(result.output)
        return response
    if isinstance(response, Ops):
        for op in response.ops:
            await _transform_op(hooks, op)
    return response


async def _transform_op(hooks: Hooks, op: StepOp) -> None:
    output: object = orjson.loads(op.data) if op.data is not None else EMPTY
    step = TransformOutputStepInfo(id=op.display_name or op.id, op=op.op, opts=op.opts)
    result = TransformOutputResult(error=None, output=output, step=step)
    await hooks.transform_output(result)
    if op.data is not None:
        # Re-encoded whenever it had data: a middleware may have changed it in place. An
        # op without data (a plan, a sleep) keeps none: its opts are what may change.
        op.data = dump_json(None if result.output is EMPTY else result.output)


class MiddlewareFailure(Exception):
    """A middleware hook raised: the call answers with its error, as a function failure."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class CallMiddleware:
    """An execution's middleware: made afresh for each call it answers (the factories get
    that call's framework request), with what it has seen of the run kept across calls."""

    def __init__(self, client: Client, function: Function[Any]) -> None:
        self._client = client
        self._function = function
        self._factories = [*client.middleware, *function.middleware]
        self._hooks: Hooks | None = None
        #: Whether this call's ``before_execution`` ran.
        self._ran = False
        #: The error of a hook run from the function's own task, reported with the answer.
        self._error: Exception | None = None
        #: Recorded results ``transform_input`` has seen: each once per execution.
        self._seen: set[str] = set()

    def begin(self, raw_request: object) -> bool:
        """A call starts: make its middleware; False if the app has none."""
        if not self._factories:
            return False
        try:
            self._hooks = Hooks.build(self._client, raw_request, self._factories)
        except Exception as exc:
            raise MiddlewareFailure(exc) from exc
        self._ran = False
        self._error = None
        return True

    def end(self) -> None:
        self._hooks = None

    @property
    def pending(self) -> bool:
        """Whether ``before_execution`` is still due in this call."""
        return self._hooks is not None and not self._ran

    async def transform_input(
        self, request: CallRequest, ctx: Context | ContextSync, *, new_code: bool
    ) -> None:
        """``transform_input`` over the recorded results this execution has not seen, then
        ``before_execution`` when what runs next is new code."""
        hooks = self._hooks
        if hooks is None:
            return
        unseen = [step_id for step_id in request.steps if step_id not in self._seen]
        memos: dict[str, Any] = {}
        if unseen:
            # Changed on a copy: the caller's map may be an engine's own.
            memos = dict(request.steps)
            request.steps = memos
            self._seen.update(unseen)
        try:
            await transform_input(hooks, ctx, self._function, memos, unseen)
        except Exception as exc:
            raise MiddlewareFailure(exc) from exc
        if new_code:
            await self.new_code()

    async def new_code(self) -> None:
        """The call is about to run code the function has not run before: once per call."""
        hooks = self._hooks
        if hooks is None or self._ran:
            return
        self._ran = True
        try:
            await hooks.before_execution()
        except Exception as exc:  # from the function's task: reported with the answer
            self._error = exc

    async def finish(self, response: CallResponse) -> CallResponse:
        """The last hooks on an answer: after the new code, the output on its way out, and
        just before the answer leaves."""
        hooks = self._hooks
        assert hooks is not None
        if self._error is not None:
            raise MiddlewareFailure(self._error)
        try:
            if not self._ran:
                self._ran = True
                await hooks.before_execution()
            await hooks.after_execution()
            response = await transform_output(hooks, response)
            await hooks.before_response()
        except Exception as exc:
            raise MiddlewareFailure(exc) from exc
        return response
