"""The intake refuses what it could not store or read back: out-of-range timestamps, data
nested deeper than the limit, over-long ids. Each refusal names the event and the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mainspring.engine.intake import MAX_DATA_DEPTH, MAX_EVENT_ID, validate_events
from mainspring.errors import EventInvalidError
from mainspring.sdk.event import Event

#: 2023-11-14, in epoch milliseconds.
NOW_MS = 1_700_000_000_000


def nested(levels: int) -> dict[str, Any]:
    """A data object ``levels`` deep (the object itself is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "ts",
    [
        9_223_372_036_854_775_808,  # 2**63: does not fit a signed 64-bit column
        10**20,
        10**29,
        -1,
        1,  # 1970 plus a millisecond: not a plausible event time
        1_700_000_000,  # seconds, not milliseconds
        4_102_444_800_000,  # 2100-01-01
    ],
)
def test_out_of_range_ts_is_refused_naming_the_field(ts: int) -> None:
    with pytest.raises(EventInvalidError, match=r"^event 0: ts: "):
        validate_events([Event(name="go", ts=ts)])
    with pytest.raises(EventInvalidError, match=r"^event 1: ts: "):
        validate_events([{"name": "go"}, {"name": "go", "ts": ts}])


@pytest.mark.parametrize("ts", [0, NOW_MS, 315_532_800_000, 4_102_444_799_999])
def test_plausible_ts_is_accepted(ts: int) -> None:
    [(event, _)] = validate_events([Event(name="go", ts=ts)])
    assert event.ts == ts


def test_internal_events_are_held_to_the_same_ts_range() -> None:
    with pytest.raises(EventInvalidError, match="ts"):
        validate_events([Event(name="inngest/x", ts=2**63)], allow_internal=True)


def test_data_nested_past_the_limit_is_refused() -> None:
    validate_events([Event(name="go", data=nested(MAX_DATA_DEPTH))])
    with pytest.raises(
        EventInvalidError, match=rf"^event 0 \('go'\): data: nests deeper than {MAX_DATA_DEPTH}"
    ):
        validate_events([Event(name="go", data=nested(MAX_DATA_DEPTH + 1))])
    with pytest.raises(EventInvalidError, match="data: nests deeper"):
        validate_events([Event(name="go", data=nested(253))])


def test_data_too_deep_for_the_encoder_names_the_depth() -> None:
    with pytest.raises(EventInvalidError, match="data: nests deeper"):
        validate_events([Event(name="go", data=nested(400))])


def test_lists_count_as_levels() -> None:
    value: Any = 1
    for _ in range(MAX_DATA_DEPTH):
        value = [value]
    with pytest.raises(EventInvalidError, match="nests deeper"):
        validate_events([Event(name="go", data={"list": value})])


def test_a_cycle_is_refused_not_looped_over() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(EventInvalidError, match="event 0"):
        validate_events([Event(name="go", data=data)])


def test_braces_inside_strings_do_not_count_as_depth() -> None:
    [(_, data_json)] = validate_events([Event(name="go", data={"s": "{[" * 1000})])
    assert orjson.loads(data_json) == {"s": "{[" * 1000}


def test_over_long_ids_are_refused() -> None:
    validate_events([Event(name="go", id="i" * MAX_EVENT_ID)])
    with pytest.raises(EventInvalidError, match=r"^event 0 \('go'\): id: "):
        validate_events([Event(name="go", id="i" * (MAX_EVENT_ID + 1))])


def test_over_long_names_are_refused() -> None:
    with pytest.raises(EventInvalidError, match="name"):
        validate_events([Event(name="n" * 513)])
