"""``step.ai``: inference calls the server makes on the function's behalf.

``step.ai.infer(step_id, adapter=..., body=...)`` reports an ``AIGateway`` op carrying the
provider URL, headers, key, format and request body (the official SDK's op, field for
field). The executor POSTs the body to the provider and records the provider's JSON
answer as the step's result, so no compute is held while the model thinks; a failed call
is retried like a failed ``step.run`` and, once retries run out, raises
:class:`~mainspring.StepError` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mainspring.errors import StepUsageError
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.ops import ResultKind, StepSpec

if TYPE_CHECKING:
    from mainspring.experimental.ai.base import BaseAdapter
    from mainspring.sdk.execution import Execution

#: ``opts.type`` of the op, as the official SDKs send it.
STEP_TYPE_AI_INFER = "step.ai.infer"

_ADAPTER_METHODS = ("auth_key", "format", "headers", "on_call", "url_infer")


def infer_spec(step_id: str, adapter: BaseAdapter, body: dict[str, Any]) -> StepSpec:
    """The ``AIGateway`` step for one inference request. ``adapter.on_call`` may fill in
    ``body`` (the model), in place, as the official SDK lets it."""
    if not isinstance(step_id, str) or not step_id:
        raise StepUsageError(f"step id must be a non-empty string, got {step_id!r}")
    missing = [name for name in _ADAPTER_METHODS if not callable(getattr(adapter, name, None))]
    if missing:
        raise StepUsageError(
            f"step {step_id!r}: ai.infer adapter {adapter!r} lacks {', '.join(missing)}; "
            "use one of mainspring.experimental.ai's adapters"
        )
    if not isinstance(body, dict):
        raise StepUsageError(
            f"step {step_id!r}: ai.infer body must be a dict (the provider's request), "
            f"got {type(body).__name__}"
        )
    adapter.on_call(body)
    key, fmt, headers, url = (
        adapter.auth_key(),
        adapter.format(),
        adapter.headers(),
        adapter.url_infer(),
    )
    if not isinstance(key, str) or not isinstance(fmt, str) or not isinstance(url, str):
        raise StepUsageError(
            f"step {step_id!r}: ai.infer adapter must give a string auth key, format and URL"
        )
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise StepUsageError(f"step {step_id!r}: ai.infer adapter headers must map str to str")
    opts: dict[str, Any] = {
        "type": STEP_TYPE_AI_INFER,
        "url": url,
        "headers": dict(headers),
        "auth_key": key,
        "format": fmt,
        "body": body,
    }
    return StepSpec(Opcode.AI_GATEWAY, step_id, step_id, ResultKind.DATA, opts=opts)


class AI:
    """``ctx.step.ai`` of an async function."""

    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    async def infer(
        self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]
    ) -> dict[str, object]:
        """Have the server send ``body`` to the model ``adapter`` points at; returns the
        provider's JSON response. Durable: on a replay the recorded response comes back."""
        result: dict[str, object] = await self._execution.step_async(
            infer_spec(step_id, adapter, body)
        )
        return result


class AISync:
    """``ctx.step.ai`` of a sync function; see :class:`AI`."""

    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def infer(
        self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]
    ) -> dict[str, object]:
        """See :meth:`AI.infer`."""
        result: dict[str, object] = self._execution.step_sync(infer_spec(step_id, adapter, body))
        return result
