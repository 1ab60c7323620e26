"""What a finished run announces (protocol §8.4): ``inngest/function.finished``, plus
``.failed`` or ``.cancelled``. They start on-failure handlers and ``function.finished``
listeners, and resume a parent waiting on an invoke (by its correlation id)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from mainspring.engine.records import RunStatus
from mainspring.protocol import consts
from mainspring.sdk.event import Event


def correlation_id(event: Mapping[str, Any]) -> str | None:
    """The invoke a run answers, if an ``inngest/function.invoked`` event started it."""
    meta = (event.get("data") or {}).get("_inngest") or {}
    found = meta.get("correlation_id") if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


def finished_data(
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    status: str,
    output: bytes | None,
    error: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``data`` of a run's finish events: its events, and its result or error."""
    data: dict[str, Any] = {
        "function_id": function_id,
        "run_id": run_id,
        "event": events[0],
        "events": list(events),
        "_inngest": {"status": status},
    }
    found = correlation_id(events[0])
    if found is not None:
        data["correlation_id"] = found
    if error is not None:
        data["error"] = {"error": error.get("message", ""), **error}
    else:
        data["result"] = None if output is None else orjson.loads(output)
    return data


def announcements(
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    status: RunStatus,
    output: bytes | None,
    error: Mapping[str, Any] | None,
    listens: Callable[[str], bool],
) -> list[Event]:
    """The events a finished run sends; none when nothing can hear them.

    A run started by one of them (an on-failure handler, any listener on
    ``inngest/function.failed``) announces nothing, as in the reference: a listener that
    fails would otherwise start itself again, forever.
    """
    if events[0].get("name") in (consts.FUNCTION_FAILED_EVENT, consts.FUNCTION_FINISHED_EVENT):
        return []
    names = [consts.FUNCTION_FINISHED_EVENT]
    if status is RunStatus.FAILED:
        names.append(consts.FUNCTION_FAILED_EVENT)
    elif status is RunStatus.CANCELLED:
        names.append(consts.FUNCTION_CANCELLED_EVENT)
    if correlation_id(events[0]) is None and not any(listens(name) for name in names):
        return []
    data = finished_data(function_id, run_id, events, status.value, output, error)
    internal = [Event(name=consts.FUNCTION_FINISHED_EVENT, data=data)]
    # The run id as event id dedupes these if a run were finalised twice.
    internal.extend(Event(name=name, data=data, id=run_id) for name in names[1:])
    return internal
