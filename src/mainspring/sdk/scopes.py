"""Control-flow signals and scopes of the replay core.

The interrupts subclass ``BaseException`` so that a user's ``except Exception:`` cannot
swallow them; the scopes are context variables that tell a step call where it stands
(inside an async parallel group, or one pass of a sync group's branches).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mainspring.sdk.ops import Registration


class NestedStepInterrupt(BaseException):
    """A step was called inside another step's handler."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id


class AbandonedInterrupt(BaseException):
    """Unwinds a sync function whose execution was abandoned."""


class BranchSuspend(BaseException):
    """Unwinds one branch of a sync parallel group that reached a new step."""


class ParallelScope:
    """An async ``group.parallel`` in progress (nested groups chain to their parent)."""

    __slots__ = ("race",)

    def __init__(self, race: bool) -> None:
        self.race = race


class BranchRound:
    """One pass over the branches of a sync ``group.parallel``."""

    __slots__ = ("counted", "race", "registrations")

    def __init__(self, race: bool) -> None:
        self.race = race
        self.registrations: list[Registration] = []
        self.counted: list[str] = []


PARALLEL_SCOPE: contextvars.ContextVar[ParallelScope | None] = contextvars.ContextVar(
    "mainspring_parallel_scope", default=None
)
BRANCH_ROUND: contextvars.ContextVar[BranchRound | None] = contextvars.ContextVar(
    "mainspring_branch_round", default=None
)
