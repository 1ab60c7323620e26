"""Opcode and parallel-mode names, exactly as they travel on the wire (protocol §3.2, §7.1)."""

from __future__ import annotations

import enum


class Opcode(enum.StrEnum):
    """What one reported step asks of the executor."""

    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"
    SYNC_RUN_COMPLETE = "SyncRunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    DEFER_ADD = "DeferAdd"
    DEFER_ABORT = "DeferAbort"

    @classmethod
    def parse(cls, value: str) -> Opcode:
        """Opcode names are case-insensitive on the server side."""
        found = _BY_LOWER.get(value.lower())
        if found is None:
            raise ValueError(f"unknown opcode {value!r}")
        return found


_BY_LOWER = {op.value.lower(): op for op in Opcode}
_BY_LOWER["aigateway"] = Opcode.AI_GATEWAY

#: Ops after which the server must wait for something before calling the SDK again.
#: A response holding one of these alongside other ops makes the batch a parallel group.
PLAN_TYPE_OPS = frozenset(
    {
        Opcode.STEP_PLANNED,
        Opcode.SLEEP,
        Opcode.WAIT_FOR_EVENT,
        Opcode.INVOKE_FUNCTION,
        Opcode.WAIT_FOR_SIGNAL,
        Opcode.AI_GATEWAY,
        Opcode.GATEWAY,
    }
)

#: Ops whose record is a run-type step's result (data or error): one kind of memo.
_RUN_KIND = frozenset({"Step", "StepRun", "StepError", "StepFailed"})


def memo_kind(op: str) -> str:
    """The kind of step a memo recorded under ``op`` belongs to: ``StepRun`` for a run-type
    step's result or error, else the op itself (``Sleep``, ``WaitForEvent``, ...). A memo
    is only ever handed to a step of its own kind."""
    return "StepRun" if op in _RUN_KIND else op


#: Ops that ride along with others and are not steps of their own.
LAZY_OPS = frozenset({Opcode.DEFER_ADD, Opcode.DEFER_ABORT})


class ParallelMode(enum.StrEnum):
    """How the executor advances a parallel group (protocol §7.2).

    ``WAIT`` (the default) calls the function again once every member has finished;
    ``RACE`` calls it again after each member finishes, so branches of several
    sequential steps advance independently.
    """

    WAIT = "wait"
    RACE = "race"
