"""Mainspring's testing kit.

Two ways to test durable functions:

- :func:`trigger` runs a function to its end in this process, without an engine or a
  server, with stand-in results for chosen steps (``step_stubs``); the drop-in for the
  reference SDK's ``inngest.experimental.mocked`` (also importable as
  ``mainspring.experimental.mocked``), without its limitations.
- :func:`time_machine` (and the pytest plugin :mod:`mainspring.testing.fixtures`) runs the
  real embedded engine on a manual clock, so that days of sleeps and waits pass in
  milliseconds.

See ``docs/testing.md``. The time machine's names are imported on first use, so that
``trigger`` alone never loads the engine.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING
from typing import Any as _Any

from mainspring.testing.client import Inngest
from mainspring.testing.sending import FAKE_EVENT_ID
from mainspring.testing.stubs import RunFailedError, Status, Timeout, UnstubbedStepError
from mainspring.testing.trigger import Result, trigger, trigger_async

if TYPE_CHECKING:
    from mainspring.testing.time_travel import TimeMachine, TimeMachineFactory, time_machine

_LAZY = {"TimeMachine", "TimeMachineFactory", "time_machine"}


def __getattr__(name: str) -> _Any:
    """The time machine's names, imported (with the engine) when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module("mainspring.testing.time_travel"), name)
    globals()[name] = value
    return value


__all__ = [
    "FAKE_EVENT_ID",
    "Inngest",
    "Result",
    "RunFailedError",
    "Status",
    "TimeMachine",
    "TimeMachineFactory",
    "Timeout",
    "UnstubbedStepError",
    "time_machine",
    "trigger",
    "trigger_async",
]
