"""The event model users send and receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

JSON = Any
"""Any JSON value: ``None``, bool, int, float, str, list or dict of JSON."""


class Event(pydantic.BaseModel):
    """An event: a name and a JSON object of data.

    >>> Event(name="app/user.created", data={"user_id": 1})
    Event(name='app/user.created', data={'user_id': 1}, id='', ts=0)

    ``id`` is an optional idempotency key: a second event with the same id does not start
    a function twice. ``ts`` is milliseconds since the epoch (0 = now).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")

    name: str
    data: Mapping[str, JSON] = pydantic.Field(default_factory=dict)
    id: str = ""
    ts: int = 0

    @pydantic.field_validator("data", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "data": dict(self.data)}
        if self.id:
            out["id"] = self.id
        if self.ts:
            out["ts"] = self.ts
        return out

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> Event:
        return cls(
            name=str(value.get("name", "")),
            data=value.get("data") or {},
            id=str(value.get("id") or ""),
            ts=int(value.get("ts") or 0),
        )
