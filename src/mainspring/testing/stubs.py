"""Step stubs for :func:`mainspring.testing.trigger`: what a stub value means for each kind
of step, the :data:`Timeout` marker, and the errors that name a missing or unusable stub.

Stubs are keyed by the id the user wrote (``ctx.step.run("charge", ...)`` is stubbed as
``"charge"``), so every repeat of an id in a loop gets the same stub. A stub becomes the
memo the step would have been recorded with, and the replay core turns it back into the
step's value, exactly as on a real run:

- ``step.run``, ``invoke`` and ``step.ai.infer``: the value itself (for ``ai.infer``, the
  provider's JSON answer);
- ``wait_for_event``: an :class:`~mainspring.Event` (or a mapping of one), or
  :data:`Timeout` (or ``None``) for a wait that timed out;
- ``sleep``: nothing to stub (sleeps end at once), but a stub is accepted and ignored;
- an exception instance, for any kind: the step failed for good, and the function gets a
  :class:`~mainspring.StepError` carrying its name and message;
- :data:`Timeout` for ``invoke``: the invoked function did not finish in time, which the
  function also sees as a :class:`~mainspring.StepError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

from mainspring.errors import MainspringError
from mainspring.protocol.messages import ErrorPayload
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.event import Event
from mainspring.sdk.serialize import error_payload


class Status(enum.Enum):
    """How a triggered run ended (the reference's values)."""

    COMPLETED = "Completed"
    FAILED = "Failed"


class _Timeout:
    __slots__ = ()

    def __repr__(self) -> str:
        return "mainspring.testing.Timeout"


#: Stub of a ``wait_for_event`` that timed out (or of an ``invoke`` that did).
Timeout: Final = _Timeout()

#: The error an invoke that timed out is recorded with (the engine writes the same).
_INVOKE_TIMEOUT = ErrorPayload(
    name="InngestInvokeTimeoutError",
    message="Timed out waiting for invoked function to complete",
)

#: Step kinds that must be stubbed (nothing in the process can produce their result), by
#: the name of the call that makes them.
MUST_STUB = {
    Opcode.WAIT_FOR_EVENT: "wait_for_event",
    Opcode.INVOKE_FUNCTION: "invoke",
    Opcode.AI_GATEWAY: "ai.infer",
}


class UnstubbedStepError(MainspringError):
    """A step that needs a stub had none (a wait, an invoke, or with ``unstubbed="fail"``
    any ``step.run``); ``step_id`` is the id the user wrote."""

    is_retriable = False

    def __init__(self, step_id: str, kind: str = "step") -> None:
        super().__init__(
            f"{kind} {step_id!r} is not stubbed: pass step_stubs={{{step_id!r}: ...}} to trigger"
        )
        self.step_id = step_id


class RunFailedError(MainspringError):
    """A run failed for a reason no exception of the function carries (its output could
    not be serialised, a step was nested in another): the failure as the engine would
    record it."""

    is_retriable = False

    def __init__(self, payload: ErrorPayload) -> None:
        super().__init__(payload.message)
        self.name = payload.name
        self.error_code = payload.code

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


def stub_memo(opcode: Opcode, user_id: str, stub: object) -> Any:
    """The memo a step of kind ``opcode`` is recorded with when ``stub`` stands in for it."""
    if isinstance(stub, BaseException):
        return {"error": error_payload(stub).to_wire()}
    if stub is Timeout:
        if opcode is Opcode.WAIT_FOR_EVENT:
            return None
        if opcode is Opcode.INVOKE_FUNCTION:
            return {"error": _INVOKE_TIMEOUT.to_wire()}
        raise TypeError(
            f"step {user_id!r}: Timeout stubs only wait_for_event and invoke, not {opcode.value}"
        )
    if opcode is Opcode.SLEEP:
        return None
    if opcode is Opcode.WAIT_FOR_EVENT:
        return _event_memo(user_id, stub)
    return {"data": stub}


def _event_memo(user_id: str, stub: object) -> Any:
    if stub is None:
        return None
    if isinstance(stub, Event):
        return stub.to_wire()
    if isinstance(stub, Mapping):
        return Event.model_validate(dict(stub)).to_wire()
    raise TypeError(
        f"step {user_id!r}: a wait_for_event stub is an Event, a mapping of one, or Timeout; "
        f"got {type(stub).__name__}"
    )
