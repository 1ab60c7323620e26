"""How the executor reaches functions: one small interface, several transports.

:class:`InProcessTransport` calls the replay core directly, with the same requests and
responses an HTTP transport carries. It also keeps each run's execution suspended between
steps (see :meth:`mainspring.sdk.execution.Execution.accepts`), so a run of N steps costs
O(N), not the O(N²) of replaying every memo on every step; it replays only after a
restart, an eviction, or when another worker moved the run on.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import CallRequest, CallResponse, ErrorPayload, Failure, Ops
from mainspring.sdk.client import Client
from mainspring.sdk.execution import Execution
from mainspring.sdk.function import Function


class Transport(Protocol):
    async def call(self, request: CallRequest) -> CallResponse: ...

    def forget(self, run_id: str) -> None:
        """The run finished or was cancelled: drop anything kept for it."""
        ...

    async def close(self) -> None: ...


class InProcessTransport:
    """Runs a client's functions in this process."""

    def __init__(
        self,
        client: Client,
        functions: Iterable[Function[Any]],
        *,
        max_live: int = 4096,
        max_live_sync: int = 64,
        step_threads: int = 32,
        chain_seconds: float | None = None,
    ) -> None:
        self.client = client
        self.functions = {fn.id: fn for fn in functions}
        self._live: collections.OrderedDict[str, Execution] = collections.OrderedDict()
        self._max_live = max_live
        self._max_live_sync = max_live_sync
        self._chain_seconds = chain_seconds
        self._live_sync = 0
        self._step_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=step_threads, thread_name_prefix="mainspring-step"
        )

    async def call(self, request: CallRequest) -> CallResponse:
        function = self.functions.get(request.fn_id)
        if function is None:
            return Failure(
                ErrorPayload(
                    name="FunctionNotFoundError",
                    message=f"no function with id {request.fn_id!r} in app {self.client.app_id!r}",
                    code=ErrorCode.FUNCTION_NOT_FOUND,
                ),
                retriable=False,
            )
        run_id = request.ctx.run_id
        execution = self._live.get(run_id)
        if execution is None:
            execution = Execution(
                function,
                self.client,
                request,
                step_executor=self._step_threads,
                report_completion=True,
                chain_seconds=self._chain_seconds,
            )
            self._keep(run_id, execution)
        else:
            self._live.move_to_end(run_id)
        response = await execution.call(request)
        if response is None:
            self._drop(run_id)
            execution = Execution(
                function,
                self.client,
                request,
                step_executor=self._step_threads,
                report_completion=True,
                chain_seconds=self._chain_seconds,
            )
            self._keep(run_id, execution)
            response = await execution.call(request)
            assert response is not None  # a fresh execution answers every request
        if not isinstance(response, Ops) and self._live.get(run_id) is execution:
            self._drop(run_id)
        return response

    def _keep(self, run_id: str, execution: Execution) -> None:
        self._live[run_id] = execution
        if not execution.is_async:
            self._live_sync += 1
        # Suspended sync executions hold a thread each, so they have a tighter cap.
        if self._live_sync > self._max_live_sync:
            self._evict(lambda e: not e.is_async, keep=run_id)
        while len(self._live) > self._max_live:
            if not self._evict(lambda e: True, keep=run_id):
                break

    def _evict(self, eligible: Callable[[Execution], bool], *, keep: str) -> bool:
        for run_id, execution in self._live.items():
            if run_id != keep and not execution.busy and eligible(execution):
                self._drop(run_id)
                return True
        return False

    def _drop(self, run_id: str) -> None:
        execution = self._live.pop(run_id, None)
        if execution is None:
            return
        if not execution.is_async:
            self._live_sync -= 1
        execution.abandon()

    def forget(self, run_id: str) -> None:
        self._drop(run_id)

    async def close(self) -> None:
        for run_id in list(self._live):
            self._drop(run_id)
        self._step_threads.shutdown(wait=False, cancel_futures=True)


class RoutingTransport:
    """Sends each function's calls to its own transport (local or a registered app)."""

    def __init__(self, default: Transport) -> None:
        self.default = default
        self.routes: dict[str, Transport] = {}

    async def call(self, request: CallRequest) -> CallResponse:
        return await self.routes.get(request.fn_id, self.default).call(request)

    def forget(self, run_id: str) -> None:
        self.default.forget(run_id)

    async def close(self) -> None:
        for transport in {id(t): t for t in [self.default, *self.routes.values()]}.values():
            await transport.close()
