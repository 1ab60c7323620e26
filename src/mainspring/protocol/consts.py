"""Names and limits fixed by the protocol."""

from __future__ import annotations

#: Execution protocol version we speak (``X-Inngest-Req-Version``).
REQUEST_VERSION = 2

#: Retries when a function sets none: 4 retries, i.e. 5 attempts (protocol §1.3).
DEFAULT_RETRIES = 4
MAX_RETRIES = 20

#: Reserved prefix for events the server itself emits.
INTERNAL_EVENT_PREFIX = "inngest/"
FUNCTION_INVOKED_EVENT = "inngest/function.invoked"
FUNCTION_FINISHED_EVENT = "inngest/function.finished"
FUNCTION_FAILED_EVENT = "inngest/function.failed"
FUNCTION_CANCELLED_EVENT = "inngest/function.cancelled"
SCHEDULED_TIMER_EVENT = "inngest/scheduled.timer"

#: Step opts ``type`` values.
STEP_TYPE_RUN = "step.run"
STEP_TYPE_SEND_EVENT = "step.sendEvent"
