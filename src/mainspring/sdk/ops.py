"""What a step call asks for (a :class:`StepSpec`) and what it is while it waits (a
:class:`Registration`), and how a memo turns back into the value user code sees."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from mainspring.errors import StepError
from mainspring.protocol.messages import ErrorPayload, StepOp, memo_value
from mainspring.protocol.opcodes import Opcode, ParallelMode
from mainspring.sdk.event import Event


class ResultKind(enum.Enum):
    """How a memo becomes the step's return value."""

    DATA = "data"  # step.run, invoke: {"data": x} -> x, {"error": e} -> raise StepError
    NONE = "none"  # sleep: null -> None
    EVENT = "event"  # wait_for_event: the event itself, or null on timeout


@dataclasses.dataclass(frozen=True, slots=True)
class StepSpec:
    """One step call, before it is given a hashed id."""

    opcode: Opcode
    user_id: str
    name: str
    result: ResultKind
    opts: dict[str, Any] | None = None
    handler: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()


def unwrap(spec: StepSpec, memo: Any) -> Any:
    """The value a memo stands for; raises :class:`StepError` for a failed step."""
    kind, value = memo_value(memo)
    if kind == "error":
        payload = ErrorPayload.from_wire(value)
        raise StepError(payload.message, payload.name, payload.stack)
    if spec.result is ResultKind.NONE:
        return None
    if spec.result is ResultKind.EVENT:
        if value is None:
            return None
        return Event.from_wire(value) if isinstance(value, dict) else value
    return value if kind == "data" else memo


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()


@dataclasses.dataclass(eq=False, slots=True)
class Registration:
    """A step reached by the function and not yet memoized."""

    spec: StepSpec
    hashed_id: str
    index: int
    seq: int
    in_parallel: bool
    race: bool
    #: The function's context at the call, for running the handler as if inline.
    context: contextvars.Context | None
    #: Async waiters resolve this future with the memo; sync waiters poll ``outcome``.
    future: asyncio.Future[Any] | None = None
    outcome: Any = PENDING
    #: The parallel round (sync groups) that collected it, to undo repeat counting.
    withdrawn: bool = False

    def to_op(
        self,
        op: Opcode | None = None,
        *,
        data: bytes | None = None,
        error: ErrorPayload | None = None,
    ) -> StepOp:
        """The op reporting this step: by default its discovery form (``step.run`` as
        ``StepPlanned``), or ``op`` with the outcome of running it."""
        spec = self.spec
        if op is None:
            op = Opcode.STEP_PLANNED if spec.opcode is Opcode.STEP_RUN else spec.opcode
        opts = spec.opts
        if self.race:
            opts = {**(opts or {}), "parallelMode": ParallelMode.RACE.value}
        return StepOp(
            op=op,
            id=self.hashed_id,
            name=spec.name,
            display_name=spec.user_id,
            opts=opts,
            data=data,
            error=error,
            user_id=spec.user_id,
            index=self.index,
        )
