"""The reference SDK's ``inngest.experimental.mocked`` under its own names: code written
for it ports by changing the import to ``from mainspring.experimental import mocked``.

It is :mod:`mainspring.testing` (the documented home), where a failing step raises
:class:`~mainspring.StepError` into the function, sends of the real client stay in the
process, a single event sent gives one id, and every step counts its own retries.
"""

from mainspring.testing.client import Inngest
from mainspring.testing.stubs import Status, Timeout, UnstubbedStepError
from mainspring.testing.trigger import Result, trigger, trigger_async

__all__ = [
    "Inngest",
    "Result",
    "Status",
    "Timeout",
    "UnstubbedStepError",
    "trigger",
    "trigger_async",
]
