"""Call requests and responses between an executor and an SDK (protocol §2-§5).

These are the in-memory forms. The HTTP transport turns them into JSON bodies, status
codes and headers; the in-process transport hands them over as they are. They are plain
slotted dataclasses rather than pydantic models because one of each is built per step on
the hot path; the HTTP edge validates untrusted input before building them.

Memo shapes (§4.3): a ``step.run`` result is stored as ``{"data": value}``, a final step
failure as ``{"error": {...}}``, a sleep as ``null``, a matched wait as the event itself.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from mainspring.protocol.opcodes import Opcode


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Marks "no memo for this step" (``None`` is a real memo: a finished sleep).
MISSING: Final = _Missing()


@dataclasses.dataclass(slots=True)
class CallContext:
    """``ctx`` of a Call Request."""

    run_id: str
    attempt: int = 0
    max_attempts: int = 5
    #: Hashed ids of completed steps in the order their results were saved.
    stack: Sequence[str] = ()
    disable_immediate_execution: bool = False
    fn_id: str = ""
    env: str = ""
    use_api: bool = False
    #: The queue item behind this call (stable across its retries) and this dispatch.
    job_id: str = ""
    request_id: str = ""
    #: Mainspring's extension: hashed id -> the op a recorded step was recorded under,
    #: for every recorded step that is not run-type (absent ids are ``StepRun``); None
    #: when the server does not say (another server), so the SDK cannot check kinds.
    step_ops: Mapping[str, str] | None = None
    #: Mainspring's extension: hashed id -> the app version that recorded the step, for
    #: recorded steps whose version differs from the app's version now (none usually).
    step_versions: Mapping[str, str] | None = None


@dataclasses.dataclass(slots=True)
class CallRequest:
    """One call of a function: discovery (``step_id is None``) or a targeted step."""

    fn_id: str
    event: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]
    #: Hashed step id -> memo in the wire shape (see module docstring).
    steps: Mapping[str, Any]
    ctx: CallContext
    step_id: str | None = None
    version: int = -1
    #: Executor side, not on the wire: whether this call may offer our SDK to run a
    #: parallel plan in one call (``x-mainspring-parallel-plans``). Not for a function
    #: with step concurrency limits: a slot is taken per call, so the plan's steps must
    #: each be a call of their own.
    plans_allowed: bool = True


@dataclasses.dataclass(slots=True)
class ErrorPayload:
    """A serialised error: ``{name, message, stack, code?, data?, cause?}``.

    ``stack`` is always written, ``null`` when there is none, as the reference server
    writes the errors it stores (SDKs read it as optional, so answers may carry it too).
    ``cause`` is an SDK's nested error (the ts SDK sends one), kept as it came.
    """

    name: str
    message: str
    stack: str | None = None
    code: str | None = None
    data: Any = None
    cause: Any = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "message": self.message, "stack": self.stack}
        if self.code is not None:
            out["code"] = self.code
        if self.data is not None:
            out["data"] = self.data  # a parsed JSON value, as from_wire keeps it
        if self.cause is not None:
            out["cause"] = self.cause
        return out

    @classmethod
    def from_wire(cls, value: Any) -> ErrorPayload:
        if not isinstance(value, Mapping):
            return cls(name="Error", message=str(value))
        stack = value.get("stack")
        code = value.get("code")
        return cls(
            name=str(value.get("name") or "Error"),
            message=str(value.get("message") or value.get("error") or ""),
            stack=stack if isinstance(stack, str) else None,
            code=code if isinstance(code, str) else None,
            data=value.get("data"),
            cause=value.get("cause"),
        )


@dataclasses.dataclass(slots=True)
class StepOp:
    """One reported step (an element of a 206 body)."""

    op: Opcode
    id: str
    name: str
    display_name: str
    opts: dict[str, Any] | None = None
    #: ``StepRun`` output as serialised JSON, so it is encoded once on its way to storage.
    data: bytes | None = None
    error: ErrorPayload | None = None
    user_id: str = ""
    index: int = 0
    #: When the step's handler started and ended (epoch ms), sent to Mainspring's executor
    #: only (it asks with ``x-mainspring-chain-seconds``): steps answered together in one
    #: call then keep their own times in the run's history.
    timing: tuple[int, int] | None = None

    @property
    def parallel_mode(self) -> str | None:
        if self.opts is None:
            return None
        mode = self.opts.get("parallelMode")
        return mode.lower() if isinstance(mode, str) else None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": self.op.value,
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "userland": {"id": self.user_id, "index": self.index},
        }
        if self.opts is not None:
            out["opts"] = self.opts
        if self.data is not None:
            out["data"] = orjson.Fragment(self.data)
        if self.error is not None:
            out["error"] = self.error.to_wire()
        if self.timing is not None:
            out["timing"] = {"start": self.timing[0], "end": self.timing[1]}
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Drift:
    """Mainspring's extension (header ``x-mainspring-drift``): the code that answered a
    call differs from the code that recorded the run. ``unreached``: hashed ids of recorded
    steps the call did not reach (before returning, or before reaching ``new``, the user
    ids of the steps it reported instead)."""

    unreached: tuple[str, ...]
    new: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True)
class Complete:
    """200: the function returned; ``output`` is its serialised return value."""

    output: bytes
    drift: Drift | None = None


@dataclasses.dataclass(slots=True)
class Ops:
    """206: steps to record or schedule."""

    ops: list[StepOp]
    #: ``Retry-After`` for a ``StepError`` in this response.
    retry_after: datetime.datetime | None = None
    #: ``X-Inngest-No-Retry: true``: every ``StepError`` here is final.
    no_retry: bool = False
    drift: Drift | None = None
    #: Mainspring's own (header ``x-mainspring-plans``): the ops that are one parallel plan
    #: the SDK ran in this call, as (first index, count) ranges of ``ops``.
    plans: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    #: The request version the SDK answered with (``X-Inngest-Req-Version``, protocol §13):
    #: the executor stores it on the run's first 206 and echoes it on later calls. None:
    #: not said (in-process calls, SDKs that omit it).
    request_version: int | None = None


@dataclasses.dataclass(slots=True)
class Failure:
    """4xx/5xx: the function itself failed (not one step)."""

    error: ErrorPayload
    retriable: bool = True
    retry_after: datetime.datetime | None = None


CallResponse = Complete | Ops | Failure


def memo_value(memo: Any) -> tuple[str, Any]:
    """Classify a memo per the SDK parsing rule of §4.3.

    Returns ``("data", value)``, ``("error", error)``, ``("input", args)`` or
    ``("raw", memo)`` for anything else (``null``, a bare event).
    """
    if isinstance(memo, Mapping) and len(memo) == 1:
        ((key, value),) = memo.items()
        if key in ("data", "error", "input"):
            return key, value
    return "raw", memo
