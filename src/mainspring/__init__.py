"""Mainspring: durable functions for Python.

Write functions made of steps; Mainspring runs them to completion through crashes,
restarts, retries and sleeps, and runs independent steps in parallel. The programming
model and names are those of the Inngest Python SDK, so ``import mainspring as inngest``
runs code written for it.

The public names are imported on first use (:func:`__getattr__`): ``import mainspring``
alone costs next to nothing, so that ``mainspring --version`` and the CLI's client
commands start quickly, and an app that uses only the SDK never loads the engine, the
HTTP stack or the CEL library until it asks for them. ``from mainspring import Engine``
and ``mainspring.Engine`` work as if everything had been imported up front.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING
from typing import Any as _Any

if TYPE_CHECKING:
    # What type checkers and IDEs see; at run time the same names come from _WHERE.
    from mainspring import engine as engine
    from mainspring import errors as errors
    from mainspring import protocol as protocol
    from mainspring import sdk as sdk
    from mainspring.engine.clock import ManualClock
    from mainspring.engine.engine import Engine
    from mainspring.engine.records import Run, RunStatus, StepAttempt
    from mainspring.errors import (
        EventInvalidError,
        FunctionConfigInvalidError,
        MainspringError,
        NonRetriableError,
        RetryAfterError,
        RunNotFoundError,
        SendEventsError,
        StepError,
        StepUsageError,
    )
    from mainspring.protocol.opcodes import ParallelMode
    from mainspring.sdk.client import Client
    from mainspring.sdk.client import Client as Inngest
    from mainspring.sdk.config import Cancel, Timeouts
    from mainspring.sdk.context import Context, ContextSync
    from mainspring.sdk.event import JSON, Event
    from mainspring.sdk.flow import (
        Batch,
        Concurrency,
        Debounce,
        Priority,
        RateLimit,
        RunConcurrency,
        Singleton,
        Throttle,
    )
    from mainspring.sdk.function import Function
    from mainspring.sdk.group import Group, GroupSync
    from mainspring.sdk.middleware import (
        LoggerMiddleware,
        Middleware,
        MiddlewareSync,
        SendEventsResult,
        StepMemos,
        TransformOutputResult,
    )
    from mainspring.sdk.serializer import PydanticSerializer, Serializer
    from mainspring.sdk.settings import Streaming
    from mainspring.sdk.step import Step, StepSync
    from mainspring.sdk.triggers import TriggerCron, TriggerEvent

__version__ = "0.1.0"

#: Where each public name lives: (module, attribute). ``Inngest`` is the reference SDK's
#: name for the client, so ``inngest.Inngest(app_id=...)`` works.
_WHERE: dict[str, tuple[str, str]] = {
    "ManualClock": ("mainspring.engine.clock", "ManualClock"),
    "Engine": ("mainspring.engine.engine", "Engine"),
    "Run": ("mainspring.engine.records", "Run"),
    "RunStatus": ("mainspring.engine.records", "RunStatus"),
    "StepAttempt": ("mainspring.engine.records", "StepAttempt"),
    **{
        name: ("mainspring.errors", name)
        for name in (
            "EventInvalidError",
            "FunctionConfigInvalidError",
            "MainspringError",
            "NonRetriableError",
            "RetryAfterError",
            "RunNotFoundError",
            "SendEventsError",
            "StepError",
            "StepUsageError",
        )
    },
    "ParallelMode": ("mainspring.protocol.opcodes", "ParallelMode"),
    "Client": ("mainspring.sdk.client", "Client"),
    "Inngest": ("mainspring.sdk.client", "Client"),
    "Cancel": ("mainspring.sdk.config", "Cancel"),
    "Timeouts": ("mainspring.sdk.config", "Timeouts"),
    "Context": ("mainspring.sdk.context", "Context"),
    "ContextSync": ("mainspring.sdk.context", "ContextSync"),
    "JSON": ("mainspring.sdk.event", "JSON"),
    "Event": ("mainspring.sdk.event", "Event"),
    **{
        name: ("mainspring.sdk.flow", name)
        for name in (
            "Batch",
            "Concurrency",
            "Debounce",
            "Priority",
            "RateLimit",
            "RunConcurrency",
            "Singleton",
            "Throttle",
        )
    },
    "Function": ("mainspring.sdk.function", "Function"),
    "Group": ("mainspring.sdk.group", "Group"),
    "GroupSync": ("mainspring.sdk.group", "GroupSync"),
    **{
        name: ("mainspring.sdk.middleware", name)
        for name in (
            "LoggerMiddleware",
            "Middleware",
            "MiddlewareSync",
            "SendEventsResult",
            "StepMemos",
            "TransformOutputResult",
        )
    },
    "PydanticSerializer": ("mainspring.sdk.serializer", "PydanticSerializer"),
    "Serializer": ("mainspring.sdk.serializer", "Serializer"),
    "Step": ("mainspring.sdk.step", "Step"),
    "StepSync": ("mainspring.sdk.step", "StepSync"),
    "Streaming": ("mainspring.sdk.settings", "Streaming"),
    "TriggerCron": ("mainspring.sdk.triggers", "TriggerCron"),
    "TriggerEvent": ("mainspring.sdk.triggers", "TriggerEvent"),
}

#: Subpackages that used to be attributes of the package as soon as it was imported (the
#: eager imports loaded them): ``mainspring.engine.X`` after ``import mainspring`` still works.
_SUBMODULES = frozenset({"engine", "errors", "protocol", "sdk"})


def __getattr__(name: str) -> _Any:
    """A public name, imported the first time it is asked for, then kept in the module's
    namespace (later lookups never come here)."""
    if name in _WHERE:
        module, attribute = _WHERE[name]
        value = getattr(_importlib.import_module(module), attribute)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, *_SUBMODULES})


__all__ = [
    "JSON",
    "Batch",
    "Cancel",
    "Client",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Engine",
    "Event",
    "EventInvalidError",
    "Function",
    "FunctionConfigInvalidError",
    "Group",
    "GroupSync",
    "Inngest",
    "LoggerMiddleware",
    "MainspringError",
    "ManualClock",
    "Middleware",
    "MiddlewareSync",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "Run",
    "RunConcurrency",
    "RunNotFoundError",
    "RunStatus",
    "SendEventsError",
    "SendEventsResult",
    "Serializer",
    "Singleton",
    "Step",
    "StepAttempt",
    "StepError",
    "StepMemos",
    "StepSync",
    "StepUsageError",
    "Streaming",
    "Throttle",
    "Timeouts",
    "TransformOutputResult",
    "TriggerCron",
    "TriggerEvent",
]
