"""Singleton (protocol §10): at most one unfinished run per key. A new run is skipped while
another holds the key (``mode="skip"``), or takes the key and has the holder cancelled
(``"cancel"``). The hold is released when its run finishes (``finish_run`` drops it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mainspring.engine.flow import skips
from mainspring.engine.flow.keys import key_value
from mainspring.engine.records import Hold, HoldKind, Job, JobKind
from mainspring.engine.store.contract import Tx
from mainspring.protocol.codes import ErrorCode
from mainspring.protocol.messages import ErrorPayload
from mainspring.sdk.flow import Singleton


def claim(
    tx: Tx,
    function_id: str,
    singleton: Singleton,
    event: Mapping[str, Any],
    run_id: str,
    now: int,
) -> tuple[ErrorPayload | None, Job | None]:
    """Take the key for ``run_id``: the reason it is skipped instead, or the job that
    cancels the run it replaces."""
    value = key_value(singleton.key, event)
    key = f"{function_id}:{value}"
    holder = tx.get_hold(HoldKind.SINGLETON, key)
    if holder is not None and holder.run_id != run_id:
        if singleton.mode == "skip":
            where = "" if singleton.key is None else f" for {singleton.key} = {value!r}"
            return (
                skips.reason(
                    "SingletonRunning",
                    ErrorCode.SINGLETON_RUNNING,
                    f"singleton{where}: run {holder.run_id} is still going",
                ),
                None,
            )
        cancel = Job(
            id=f"{holder.run_id}-cancel",
            run_id=holder.run_id,
            kind=JobKind.CANCEL,
            run_at=now,
            data={"reason": f"singleton: replaced by run {run_id}"},
        )
        tx.put_hold(Hold(HoldKind.SINGLETON, key, run_id, now))
        return None, cancel if tx.enqueue(cancel) else None
    tx.put_hold(Hold(HoldKind.SINGLETON, key, run_id, now))
    return None, None
