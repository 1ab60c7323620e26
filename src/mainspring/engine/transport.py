"""How the executor reaches functions: one small interface, several transports.

:class:`InProcessTransport` calls the replay core directly, with the same requests and
responses an HTTP transport carries. It also keeps each run's execution suspended between
steps (see :meth:`mainspring.sdk.execution.Execution.accepts`), so a run of N steps costs
O(N), not the O(N²) of replaying every memo on every step; it replays only after a
restart, an eviction, or when another worker moved the run on.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from typing import Any, Protocol

from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import CallRequest, CallResponse, ErrorPayload, Failure
from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.sdk.live import LiveExecutions


class Transport(Protocol):
    async def call(self, request: CallRequest) -> CallResponse: ...

    def forget(self, run_id: str) -> None:
        """The run finished or was cancelled: drop anything kept for it."""
        ...

    async def close(self) -> None: ...


class InProcessTransport:
    """Runs a client's functions in this process, keeping each run's execution suspended
    between its calls (:class:`~mainspring.sdk.live.LiveExecutions`)."""

    def __init__(
        self,
        client: Client,
        functions: Iterable[Function[Any]],
        *,
        max_live: int = 4096,
        max_live_sync: int = 64,
        step_threads: int = 32,
        chain_seconds: float | None = None,
        parallel_plans: bool = True,
    ) -> None:
        self.client = client
        self.functions = {fn.id: fn for fn in functions}
        self._chain_seconds = chain_seconds
        self._parallel_plans = parallel_plans
        self._step_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=step_threads, thread_name_prefix="mainspring-step"
        )
        self._live = LiveExecutions(
            client,
            max_live=max_live,
            max_live_sync=max_live_sync,
            step_executor=self._step_threads,
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
        return await self._live.call(
            function,
            request,
            report_completion=True,
            chain_seconds=self._chain_seconds,
            parallel_plans=self._parallel_plans and request.plans_allowed,
        )

    def forget(self, run_id: str) -> None:
        self._live.drop(run_id)

    async def close(self) -> None:
        self._live.clear()
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
