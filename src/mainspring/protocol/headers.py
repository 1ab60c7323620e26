"""HTTP header names and values of the wire protocol (protocol §1.2, §2.2, §2.6, §3, §8.3).

Names are lowercase because HTTP header names are case-insensitive and every transport we
use (ASGI, httpx) either lowercases them or looks them up case-insensitively; comparing
against one spelling avoids a class of "header present but not found" bugs. Anything that
reads a plain ``Mapping[str, str]`` of headers should lowercase its keys first.

``Retry-After`` values are formatted and parsed here too, so both ends share one reading.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Final

# -- sent by the SDK on every response and outgoing request (§2.6) -----------------------------

#: ``<name>:v<semver>``; mandatory: the executor fails any response that lacks it.
SDK: Final = "x-inngest-sdk"
#: Execution protocol version; the executor stores it on the first opcode response of a run.
REQ_VERSION: Final = "x-inngest-req-version"
FRAMEWORK: Final = "x-inngest-framework"
ENV: Final = "x-inngest-env"
PLATFORM: Final = "x-inngest-platform"
#: The server kind the SDK expects to talk to (echoes ``x-inngest-server-kind``).
EXPECTED_SERVER_KIND: Final = "x-inngest-expected-server-kind"
SERVER_TIMING: Final = "server-timing"
USER_AGENT: Final = "user-agent"
CONTENT_TYPE: Final = "content-type"

# -- call responses (§3) -----------------------------------------------------------------------

#: ``true``: the failure (or every ``StepError`` of a 206) is final. Authoritative when present.
NO_RETRY: Final = "x-inngest-no-retry"
#: Integer seconds or a date; replaces the backoff of the next attempt (clamped 1s..24h).
RETRY_AFTER: Final = "retry-after"

# -- call requests from the executor (§2.2) ----------------------------------------------------

#: ``t=<unix seconds>&s=<hex hmac>`` (§9); also on responses to signed requests.
SIGNATURE: Final = "x-inngest-signature"
STEP_ID: Final = "x-inngest-step-id"
RUN_ID: Final = "x-run-id"
REQUEST_ID: Final = "x-request-id"
JOB_ID: Final = "x-inngest-job-id"
GENERATION_ID: Final = "x-inngest-generation-id"
FORCE_STEP_PLAN: Final = "x-inngest-force-step-plan"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
ACCOUNT_ID: Final = "account-id"
#: Mainspring's own (other SDKs ignore it): the executor records sequential steps reported
#: together (and a ``RunComplete`` after them) in one unit, so the SDK may run successive
#: steps in one call for up to this many seconds before answering (a step chain).
CHAIN_SECONDS: Final = "x-mainspring-chain-seconds"
#: Mainspring's own, beside ``CHAIN_SECONDS``: the executor records a parallel plan's
#: outcomes reported together in one unit (each failed step is retried on its own), so
#: the SDK may run a plan of ``step.run`` steps in the call that found it (``sdk/plans.py``).
PARALLEL_PLANS: Final = "x-mainspring-parallel-plans"
#: Mainspring's own, on such an answer: which ops are a plan run in the call
#: (``first:count`` ranges of the 206 body, comma-separated).
PLANS: Final = "x-mainspring-plans"

#: Mainspring's own, on a call's answer: the recorded steps the call did not reach
#: (``{"unreached": [hashed ids], "new": [user ids]}``, see ``messages.Drift``).
DRIFT: Final = "x-mainspring-drift"

# -- sync and server identity (§1.2, §1.6) -----------------------------------------------------

#: ``dev`` or ``cloud``; set by the server on its responses and sync pings.
SERVER_KIND: Final = "x-inngest-server-kind"
#: ``in_band`` or ``out_of_band``.
SYNC_KIND: Final = "x-inngest-sync-kind"
#: ``Bearer <hashed signing key>`` on SDK → server API calls (§9).
AUTHORIZATION: Final = "authorization"

# -- event API (§8.3) --------------------------------------------------------------------------

#: Seed from which the server derives deterministic event ids for a send.
EVENT_ID_SEED: Final = "x-inngest-event-id-seed"

# -- values ------------------------------------------------------------------------------------

SDK_NAME: Final = "mainspring"
JSON_CONTENT_TYPE: Final = "application/json"
SERVER_KIND_DEV: Final = "dev"
SERVER_KIND_CLOUD: Final = "cloud"
SYNC_KIND_IN_BAND: Final = "in_band"
SYNC_KIND_OUT_OF_BAND: Final = "out_of_band"
#: The ``user-agent`` the Go executor sends on call requests.
EXECUTOR_USER_AGENT: Final = "Inngest"


def sdk_header_value(version: str) -> str:
    """``x-inngest-sdk`` for this SDK: ``mainspring:v<version>``.

    The executor only checks that the header exists (its value feeds a legacy retry rule
    for old ``inngest-js`` versions), so the exact version is informational. A leading
    ``v`` in ``version`` is not doubled.
    """
    return f"{SDK_NAME}:v{version.removeprefix('v')}"


# -- Retry-After (§3.4) ------------------------------------------------------------------------

#: The executor keeps a retry at least this far and at most this far ahead.
MIN_RETRY_AFTER: Final = datetime.timedelta(seconds=1)
MAX_RETRY_AFTER: Final = datetime.timedelta(hours=24)
#: Integer seconds; no date is 7 characters or shorter, so length tells the two forms apart.
_RETRY_SECONDS: Final = re.compile(r"[0-9]{1,7}")


def _utc(at: datetime.datetime) -> datetime.datetime:
    return at.replace(tzinfo=datetime.UTC) if at.tzinfo is None else at.astimezone(datetime.UTC)


def format_retry_after(at: datetime.datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the py SDK sends it (naive means UTC)."""
    at = _utc(at)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_retry_after(value: str, *, now: datetime.datetime) -> datetime.datetime | None:
    """When to retry, from integer seconds (≤ 7 digits) or a date, clamped to 1s..24h.

    Accepts RFC 3339 / ISO 8601 and HTTP dates; a date without a zone is UTC. Returns
    ``None`` for anything else: the header only tunes backoff, so a garbled one is ignored
    rather than failing the attempt.
    """
    now, text = _utc(now), value.strip()
    if _RETRY_SECONDS.fullmatch(text):
        at = now + datetime.timedelta(seconds=int(text))
    else:
        try:
            at = datetime.datetime.fromisoformat(text)
        except ValueError:
            try:
                at = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    return min(max(_utc(at), now + MIN_RETRY_AFTER), now + MAX_RETRY_AFTER)


def parse_chain_seconds(value: str | None) -> float | None:
    """The chain budget of a call request, or None (absent, malformed or not positive):
    the SDK then answers after one step, as the protocol's other executors expect."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds <= 60 else None
