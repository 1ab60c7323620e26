"""Priority (protocol §10): a CEL expression on the event gives a number of seconds, and the
run's work is ordered as if it had arrived that much earlier (a negative number: later).

The offset is clamped to ±12 h, as the reference server clamps it; an expression that
fails or gives something other than a number counts as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mainspring.protocol.expressions import ExpressionError, compile_expression
from mainspring.sdk.flow import MAX_PRIORITY_SECONDS, Priority


def offset_ms(priority: Priority | None, event: Mapping[str, Any]) -> int:
    """How many milliseconds earlier the run's work counts as queued."""
    if priority is None or priority.run is None:
        return 0
    try:
        value = compile_expression(priority.run).evaluate({"event": event})
    except ExpressionError:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    seconds = max(-MAX_PRIORITY_SECONDS, min(MAX_PRIORITY_SECONDS, int(value)))
    return seconds * 1000
