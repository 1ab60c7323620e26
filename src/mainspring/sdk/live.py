"""Executions kept suspended between the calls of their runs.

A run's :class:`~mainspring.sdk.execution.Execution` stops at the steps it waits on and
can take the next call where it stopped (see ``Execution.accepts``): a run of N steps then
costs O(N) instead of replaying every memo on every call, and a targeted call of a
parallel group runs its step without replaying the group. When the call does not fit what
the execution waits on (a restart, another worker moved the run on, an eviction), a fresh
execution replays from the memos, so keeping executions is an optimisation, never a
source of truth.

Used by the engine's in-process transport and by the serve handler alike.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from mainspring.protocol.messages import CallRequest, CallResponse, Ops
from mainspring.sdk.client import Client
from mainspring.sdk.execution import Execution
from mainspring.sdk.function import Function


class LiveExecutions:
    """At most ``max_live`` suspended executions (``max_live_sync`` of sync functions,
    which hold a thread each), least recently used evicted first."""

    def __init__(
        self,
        client: Client,
        *,
        max_live: int = 4096,
        max_live_sync: int = 64,
        step_executor: Executor | None = None,
        keep: bool = True,
        max_idle_seconds: float | None = None,
    ) -> None:
        self.client = client
        self._live: collections.OrderedDict[str, Execution] = collections.OrderedDict()
        self._max_live = max_live
        self._max_live_sync = max_live_sync
        self._live_sync = 0
        self._step_executor = step_executor
        #: False: every call gets a fresh execution, abandoned once it has answered.
        self._keep_any = keep
        #: An execution no call reached for this long is dropped (None: kept until evicted).
        #: Over HTTP nothing tells the app that a run ended elsewhere or was cancelled.
        self._max_idle = max_idle_seconds
        self._last_used: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._live)

    async def call(
        self,
        function: Function[Any],
        request: CallRequest,
        *,
        report_completion: bool,
        chain_seconds: float | None,
        parallel_plans: bool = False,
        keep: bool = True,
        raw_request: object = None,
    ) -> CallResponse:
        """Answer ``request`` with the run's kept execution, or a fresh one that replays;
        ``keep=False``: do not keep it afterwards (a run whose state is large).
        ``raw_request``: the framework's request, for middleware."""
        run_id = request.ctx.run_id
        now = asyncio.get_running_loop().time()
        self._drop_idle(now)

        def fresh() -> Execution:
            execution = Execution(
                function,
                self.client,
                request,
                step_executor=self._step_executor,
                report_completion=report_completion,
                chain_seconds=chain_seconds,
                parallel_plans=parallel_plans,
            )
            self._keep(run_id, execution)
            return execution

        execution = self._live.get(run_id)
        if (
            execution is None
            or execution.function is not function
            or execution.loop is not asyncio.get_running_loop()
        ):
            self.drop(run_id)
            execution = fresh()
        else:
            self._live.move_to_end(run_id)
        self._last_used[run_id] = now
        execution.parallel_plans = parallel_plans and report_completion  # per call
        response = await execution.call(request, raw_request)
        if response is None:
            self.drop(run_id)
            execution = fresh()
            self._last_used[run_id] = now
            response = await execution.call(request, raw_request)
            assert response is not None  # a fresh execution answers every request
        done = not isinstance(response, Ops)  # the run is over (or failed)
        if (done or not keep or not self._keep_any) and self._live.get(run_id) is execution:
            self.drop(run_id)
        return response

    def _drop_idle(self, now: float) -> None:
        """Drop executions idle for longer than ``max_idle_seconds``, oldest first (the
        least recently used come first in ``_live``)."""
        if self._max_idle is None:
            return
        for run_id in list(self._live):
            if now - self._last_used.get(run_id, now) <= self._max_idle:
                break
            if not self._live[run_id].busy:
                self.drop(run_id)

    def _keep(self, run_id: str, execution: Execution) -> None:
        self._live[run_id] = execution
        if not execution.is_async:
            self._live_sync += 1
        if self._live_sync > self._max_live_sync:
            self._evict(lambda e: not e.is_async, keep=run_id)
        while len(self._live) > self._max_live:
            if not self._evict(lambda e: True, keep=run_id):
                break

    def _evict(self, eligible: Callable[[Execution], bool], *, keep: str) -> bool:
        for run_id, execution in self._live.items():
            if run_id != keep and not execution.busy and eligible(execution):
                self.drop(run_id)
                return True
        return False

    def drop(self, run_id: str) -> None:
        """Abandon the run's execution, if one is kept."""
        self._last_used.pop(run_id, None)
        execution = self._live.pop(run_id, None)
        if execution is None:
            return
        if not execution.is_async:
            self._live_sync -= 1
        if not (execution.is_async and execution.loop.is_closed()):
            execution.abandon()  # (an async one on a closed loop went with its loop)

    def clear(self) -> None:
        for run_id in list(self._live):
            self.drop(run_id)
