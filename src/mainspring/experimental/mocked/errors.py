"""``inngest.experimental.mocked.errors``: where the reference keeps UnstubbedStepError."""

from mainspring.testing.stubs import UnstubbedStepError

__all__ = ["UnstubbedStepError"]
