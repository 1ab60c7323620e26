"""Errors users see and raise.

Hierarchy::

    Exception
     └── MainspringError                   root of everything raised by mainspring
          ├── NonRetriableError            raise it to fail a step or run without retrying
          ├── RetryAfterError              raise it to retry no sooner than a given time
          ├── StepError                    a step failed for good; raised into user code
          ├── FunctionConfigInvalidError   bad create_function arguments (definition time)
          ├── EventInvalidError            an event the engine refuses (name, size, shape)
          ├── SendEventsError              some events of a send were refused
          ├── RunNotFoundError             no run with that id
          └── StepUsageError               a step API used wrongly (nested step, bad callable)

Each class carries ``code`` (an :class:`~mainspring.protocol.codes.ErrorCode`) and
``is_retriable``: whether the executor retries the attempt that raised it.
"""

from __future__ import annotations

import datetime
from typing import ClassVar

from mainspring.protocol.codes import ErrorCode


class MainspringError(Exception):
    """Root of every error mainspring raises."""

    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN
    is_retriable: ClassVar[bool] = True

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NonRetriableError(MainspringError):
    """Fail without retrying.

    Raised inside ``step.run`` it fails that step at once (user code then sees a
    :class:`StepError` it may catch); raised in the function body it fails the run.
    """

    code = ErrorCode.NON_RETRIABLE
    is_retriable = False

    def __init__(self, message: str = "", *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class RetryAfterError(MainspringError):
    """Retry, but not before ``retry_after`` (milliseconds, a timedelta or a datetime).

    It does not grant extra attempts; it only replaces the backoff delay.
    """

    code = ErrorCode.RETRY_AFTER

    def __init__(
        self,
        message: str,
        retry_after: int | datetime.timedelta | datetime.datetime,
        *,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.quiet = quiet
        now = datetime.datetime.now(datetime.UTC)
        if isinstance(retry_after, datetime.datetime):
            at = retry_after
            if at.tzinfo is None:
                at = at.astimezone()
        elif isinstance(retry_after, datetime.timedelta):
            at = now + retry_after
        else:
            at = now + datetime.timedelta(milliseconds=retry_after)
        self.retry_after: datetime.datetime = at.astimezone(datetime.UTC)


class StepError(MainspringError):
    """A step failed for good (retries exhausted, non-retriable, failed invoke).

    Raised where user code awaited the step; catch it to recover. Left uncaught, it fails
    the run without further retries.
    """

    code = ErrorCode.STEP_ERRORED
    is_retriable = False

    def __init__(self, message: str, name: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.stack = stack

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name


class FunctionConfigInvalidError(MainspringError):
    """``create_function`` got arguments it cannot accept; the message names them."""

    code = ErrorCode.FUNCTION_CONFIG_INVALID
    is_retriable = False


class EventInvalidError(MainspringError):
    """An event was refused: missing or reserved name, bad data, too large."""

    is_retriable = False


class SendEventsError(MainspringError):
    """Some events of a send were refused; ``ids`` holds those accepted before it."""

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class RunNotFoundError(MainspringError):
    """No run has that id."""

    is_retriable = False


class StepUsageError(MainspringError):
    """A step API was used in a way that cannot work (for example a step inside a step)."""

    code = ErrorCode.STEP_NESTED
    is_retriable = False
