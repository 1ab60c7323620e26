"""The executor's in-memory copy of an unfinished run, and the views it hands to calls.

A run's state is loaded from the store once per process and then kept up to date by the
units that change it, so building a call request costs O(1), not O(steps).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import orjson

from mainspring.engine.records import Run, RunStatus
from mainspring.engine.store.contract import NewRun, RunState
from mainspring.protocol.opcodes import memo_kind

if TYPE_CHECKING:
    from mainspring.engine.flow.run_flow import RunFlow


class LazyMemos(Mapping[str, Any]):
    """The memo map of a request, parsed from stored JSON only for steps the SDK reads."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, bytes]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self._raw[key])

    def stored_json(self) -> Mapping[str, bytes]:
        """The memos as stored (JSON), for a body that carries them unparsed
        (``protocol.wire.request_to_wire``)."""
        return self._raw

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._raw.get(key)
        return default if raw is None else orjson.loads(raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class StackView(Sequence[str]):
    """A fixed-length view of a run's growing stack: the stack as of one request."""

    __slots__ = ("_items", "_length")

    def __init__(self, items: list[str]) -> None:
        self._items = items
        self._length = len(items)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[str]:
        # One C-level slice, not Sequence's index-by-index walk through __getitem__: every
        # call request lists the whole stack (protocol/wire.py), so a run of n targeted
        # calls iterates O(n^2) items in all.
        return iter(self._items[: self._length])

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            return self._items[start:stop:step]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self._items[index % self._length]


class ActiveRun:
    """The executor's in-memory copy of one unfinished run, loaded once per process."""

    __slots__ = (
        "admitted_at",
        "coalesce_key",
        "created_at",
        "event_id",
        "events",
        "flow",
        "force_step_plan",
        "function_id",
        "grouped",
        "kinds",
        "max_attempts",
        "memos",
        "request_version",
        "run_id",
        "stack",
        "started_at",
        "status",
        "versions",
    )

    def __init__(self, state: RunState) -> None:
        run = state.run
        self.run_id = run.id
        self.function_id = run.function_id
        self.event_id = run.event_id
        self.created_at = run.created_at
        self.started_at = run.started_at
        self.status = run.status
        self.events: list[dict[str, Any]] = orjson.loads(state.events_json)
        self.max_attempts = state.max_attempts
        self.request_version = state.request_version
        self.force_step_plan = state.force_step_plan
        self.coalesce_key = state.coalesce_key
        self.memos: dict[str, bytes] = {s.step_id: s.memo for s in state.steps}
        self.stack: list[str] = [s.step_id for s in state.steps]
        #: Recorded steps that are not run-type, by the op they were recorded under: the
        #: SDK checks a memo goes to a step of its kind (``CallContext.step_ops``).
        self.kinds: dict[str, str] = {
            s.step_id: s.op for s in state.steps if memo_kind(s.op) != "StepRun"
        }
        #: The app version each recorded step was recorded under (steps with one): the SDK
        #: names it when an error follows from a result an older version recorded.
        self.versions: dict[str, str] = {
            s.step_id: s.app_version for s in state.steps if s.app_version is not None
        }
        #: Whether a parallel batch's pending set may exist (saves skip it otherwise).
        self.grouped = bool(state.pending)
        #: When the run passed its flow-control start gates (None: not yet).
        self.admitted_at = state.admitted_at
        #: Its flow control (engine/flow), derived once per load: ``(flow,)`` when known.
        self.flow: tuple[RunFlow | None] | None = None

    @classmethod
    def new(cls, run: NewRun) -> ActiveRun:
        """The state of a run just created: no steps yet."""
        return cls(
            RunState(
                run=Run(
                    id=run.run_id,
                    function_id=run.function_id,
                    event_id=run.event_id,
                    status=RunStatus.QUEUED,
                    output=None,
                    error=None,
                    created_at=run.created_at,
                    started_at=None,
                    ended_at=None,
                ),
                events_json=run.events_json,
                max_attempts=run.max_attempts,
                request_version=-1,
                force_step_plan=False,
                coalesce_key=None,
                steps=[],
                pending=set(),
                admitted_at=run.created_at if run.admitted else None,
            )
        )

    def snapshot(self) -> Run:
        return Run(
            id=self.run_id,
            function_id=self.function_id,
            event_id=self.event_id,
            status=self.status,
            output=None,
            error=None,
            created_at=self.created_at,
            started_at=self.started_at,
            ended_at=None,
        )
