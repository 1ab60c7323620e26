"""Error codes carried in function-level error bodies (``{code, name, message, stack}``)."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Why a call or a run failed; stable strings, safe to match on."""

    UNKNOWN = "unknown"
    NON_RETRIABLE = "non_retriable_error"
    RETRY_AFTER = "retry_after_error"
    STEP_ERRORED = "step_errored"
    STEP_NESTED = "step_nested"
    STEP_UNEXPECTED = "step_unexpected"
    STEP_NOT_FOUND = "step_not_found"
    STEP_KIND_CHANGED = "step_kind_changed"
    OUTPUT_UNSERIALIZABLE = "output_unserializable"
    FUNCTION_NOT_FOUND = "function_not_found"
    FUNCTION_CONFIG_INVALID = "function_config_invalid"
    OPCODE_UNSUPPORTED = "opcode_unsupported"
    STEP_LIMIT = "step_limit_exceeded"
    TIMEOUT_TOO_LONG = "timeout_too_long"
    SERIALIZATION = "serialization_error"
    # Why a run was skipped by flow control (protocol §10): its error carries one of these.
    RATE_LIMITED = "rate_limited"
    IDEMPOTENCY_KEY_USED = "idempotency_key_used"
    SINGLETON_RUNNING = "singleton_running"
    DEBOUNCE_REPLACED = "debounce_replaced"
