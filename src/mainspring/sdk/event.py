"""The event model users send and receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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

    # Not frozen: middleware replaces an event's data on its way in and out (decrypting
    # what arrives, encrypting what is sent), as the reference's middleware does.
    model_config = pydantic.ConfigDict(extra="ignore", validate_assignment=True)

    name: str
    data: Mapping[str, JSON] = pydantic.Field(default_factory=dict)
    id: str = ""
    ts: int = 0

    if TYPE_CHECKING:
        # What type checkers show: ``data`` may also be a pydantic model (see _to_mapping).
        def __init__(
            self,
            *,
            name: str,
            data: Mapping[str, JSON] | pydantic.BaseModel = ...,
            id: str = "",
            ts: int = 0,
        ) -> None: ...

    @pydantic.field_validator("data", mode="before")
    @classmethod
    def _to_mapping(cls, value: object) -> object:
        # A model is kept as its JSON object, which is what is sent and what arrives.
        if isinstance(value, pydantic.BaseModel):
            return value.model_dump(mode="json")
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
