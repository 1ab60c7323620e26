"""The SDK's half of the drift rules: a recorded result only ever goes to a step of the
kind that recorded it.

It also tells the server when a call did not reach every recorded step (the function
returned without them, or went on to other steps first): the server notes it in the
run's history, so a user can see that the code changed under the run and what it skipped.

A deploy can reuse a step id for another kind of step (v1 ``step.sleep("nap")``, v2
``step.run("nap", charge)``). Handed the old memo, the new step would return the sleep's
``None`` without ever running ``charge``, and a wait would return as if it had timed out.
Mainspring's server says under which op each recorded step was saved
(``CallContext.step_ops``); when the kinds differ the run fails, naming the step, both kinds
and the fix, and user code cannot catch it and carry on with the wrong value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mainspring.protocol.messages import (
    CallContext,
    CallResponse,
    Complete,
    Drift,
    ErrorPayload,
    Failure,
    Ops,
)
from mainspring.protocol.opcodes import Opcode, memo_kind

if TYPE_CHECKING:
    from mainspring.sdk.ops import StepSpec

#: How a user wrote each kind of step, for messages.
_CALLS = {
    "StepRun": "step.run (or another run-type step)",
    Opcode.SLEEP.value: "step.sleep / step.sleep_until",
    Opcode.WAIT_FOR_EVENT.value: "step.wait_for_event",
    Opcode.INVOKE_FUNCTION.value: "step.invoke",
}


class StepKindChanged(BaseException):
    """A memo met a step of another kind; unwinds the function (see the module docstring)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_memo_kind(
    step_ops: Mapping[str, str] | None, hashed_id: str, opcode: Opcode, user_id: str
) -> None:
    """Raise :class:`StepKindChanged` if the memo of ``hashed_id`` was recorded by another
    kind of step than ``opcode``; nothing when the server does not say (``None``)."""
    if step_ops is None:
        return
    recorded = memo_kind(step_ops.get(hashed_id, "StepRun"))
    wanted = memo_kind(opcode.value)
    if recorded == wanted:
        return
    raise StepKindChanged(
        f"step {user_id!r} was recorded as {_CALLS.get(recorded, recorded)} by an earlier "
        f"version of this function, and the code now calls it as "
        f"{_CALLS.get(wanted, wanted)}: a recorded result is never handed to another kind "
        f"of step. Give the new step a new id (for example {user_id + '-v2'!r}); runs "
        "started after the change are not affected."
    )


class ReplayNotes:
    """One execution's account of the recorded steps the server sent it: which it handed
    to the function (checking each goes to a step of its kind), and which were recorded by
    another app version than this one, so that an error that follows names them."""

    __slots__ = ("_consumed", "_older", "_replayed_older", "_step_ops", "_version")

    def __init__(self, ctx: CallContext, app_version: str | None) -> None:
        self._version = app_version
        self._consumed: set[str] = set()
        #: The user id and recording version of each handed-out step an older app recorded.
        self._replayed_older: dict[str, str] = {}
        self.update(ctx)

    def update(self, ctx: CallContext) -> None:
        """Take the server's notes of a (later) request."""
        self._step_ops = ctx.step_ops
        self._older = ctx.step_versions or {}

    def consume(self, hashed_id: str, spec: StepSpec) -> None:
        """The function reached recorded step ``hashed_id`` as ``spec``: check its kind."""
        check_memo_kind(self._step_ops, hashed_id, spec.opcode, spec.user_id)
        self._consumed.add(hashed_id)
        version = self._older.get(hashed_id)
        if version is not None:
            self._replayed_older[spec.user_id] = version

    def delivered(self, step_ids: Collection[str]) -> None:
        """These results went to steps this execution is waiting on."""
        self._consumed.update(step_ids)

    def unreached(self, memos: Mapping[str, Any], known: Sequence[str]) -> tuple[str, ...]:
        """Recorded steps (hashed ids) not handed to the function so far, among ``known``:
        those the requests so far said were recorded. (``memos`` may be a live view of
        the run's results, which a step recorded during this call joins: not drift.)"""
        if len(self._consumed) >= len(memos):
            return ()  # the common case: every memo went to its step
        return tuple(step_id for step_id in known if step_id not in self._consumed)

    def note(self, error: ErrorPayload) -> ErrorPayload:
        """``error`` with a note naming the steps this call replayed from another app
        version, if it replayed any: the likeliest cause of an error after a deploy."""
        if not self._replayed_older:
            return error
        shown = list(self._replayed_older.items())[:10]
        steps = ", ".join(f"{user_id!r} (app version {v!r})" for user_id, v in shown)
        now = "no app version" if self._version is None else f"app version {self._version!r}"
        note = (
            f" [this call replayed results recorded by an earlier version of the app: "
            f"{steps}; the app now runs {now}]"
        )
        return dataclasses.replace(error, message=error.message + note)

    def annotate(self, failure: CallResponse) -> CallResponse:
        """A function-level failure with :meth:`note` applied."""
        if not isinstance(failure, Failure) or not self._replayed_older:
            return failure
        return dataclasses.replace(failure, error=self.note(failure.error))


def with_drift(response: CallResponse, unreached: tuple[str, ...]) -> CallResponse:
    """``response`` with a :class:`Drift` report if it answers (returns, or reports
    steps) while the recorded steps ``unreached`` were not reached first."""
    if not unreached or not isinstance(response, (Complete, Ops)):
        return response
    new: tuple[str, ...] = ()
    if isinstance(response, Ops):
        steps = [op for op in response.ops if op.op not in _NOT_STEPS]
        new = tuple(op.user_id or op.display_name for op in steps)
    return dataclasses.replace(response, drift=Drift(unreached=unreached, new=new))


#: Ops of an answer that are not steps.
_NOT_STEPS = frozenset({Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST})
