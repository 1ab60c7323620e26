"""Reading the events of a send (``POST /e/{key}``, the dashboard's send form): each field's
type checked, with the error naming the event and the field as the intake does."""

from __future__ import annotations

import math
from typing import Any

from mainspring.sdk.event import Event
from mainspring.server.limits import Refused


def event_from(item: Any, index: int) -> Event:
    """One event of a send, each field's type checked; ranges are the intake's (it names
    ``event <n>: <field>: ...`` the same way)."""
    where = f"event {index}"
    if not isinstance(item, dict):
        raise Refused(400, f"{where}: not a JSON object")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise Refused(400, f"{where}: name: must be a string")
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        raise Refused(400, f"{where}: data: must be a JSON object")
    if isinstance(data, dict) and "_inngest" in data:
        data = {k: v for k, v in data.items() if k != "_inngest"}
    event_id = item.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise Refused(400, f"{where}: id: must be a string")
    ts = item.get("ts")
    if isinstance(ts, float) and math.isfinite(ts) and ts.is_integer():
        ts = int(ts)
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise Refused(400, f"{where}: ts: must be a whole number of epoch milliseconds")
    return Event(name=name or "", data=data or {}, id=event_id or "", ts=ts or 0)
