"""The SDK's account of recorded steps (sdk/drift.py): what counts as not reached."""

from __future__ import annotations

from mainspring.protocol.messages import CallContext
from mainspring.sdk.drift import ReplayNotes


def test_a_result_recorded_during_the_call_is_not_drift() -> None:
    """The in-process transport hands the SDK live views of the run's results: a step the
    engine records while the call runs (a sleep of another branch ending) shows up in
    ``memos`` but was never part of the request, so it is not a step the code skipped."""
    notes = ReplayNotes(CallContext(run_id="r", stack=("a",)), None)
    notes.delivered(["a"])
    live_memos = {"a": b"1", "b1": b"null"}  # b1 recorded while the call ran
    assert notes.unreached(live_memos, ["a"]) == ()


def test_a_recorded_step_the_call_did_not_reach_is_drift() -> None:
    notes = ReplayNotes(CallContext(run_id="r", stack=("a", "b")), None)
    notes.delivered(["a"])
    assert notes.unreached({"a": b"1", "b": b"2"}, ["a", "b"]) == ("b",)
