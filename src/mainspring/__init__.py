"""Mainspring: durable functions for Python.

Write functions made of steps; Mainspring runs them to completion through crashes,
restarts, retries and sleeps, and runs independent steps in parallel. The programming
model and names are those of the Inngest Python SDK, so ``import mainspring as inngest``
runs code written for it.
"""

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
from mainspring.sdk.step import Step, StepSync
from mainspring.sdk.triggers import TriggerCron, TriggerEvent

#: The reference SDK's name for the client, so ``inngest.Inngest(app_id=...)`` works.
Inngest = Client

__version__ = "0.1.0"

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
    "MainspringError",
    "ManualClock",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "Run",
    "RunConcurrency",
    "RunNotFoundError",
    "RunStatus",
    "SendEventsError",
    "Singleton",
    "Step",
    "StepAttempt",
    "StepError",
    "StepSync",
    "StepUsageError",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
]
