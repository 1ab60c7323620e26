"""Request signatures and API bearer keys (protocol §9).

A signing key looks like ``signkey-<env>-<hex>``; self-hosted servers also take the bare
hex. Two derived forms travel on the wire:

- ``x-inngest-signature: t=<unix seconds>&s=<hex>`` where ``s`` is HMAC-SHA256 keyed by the
  UTF-8 bytes of the *prefix-stripped key text* (not hex-decoded) over ``body || ascii(t)``.
  The body must be the exact bytes sent; call-request bodies are JCS-canonical
  (:func:`mainspring.protocol.wire.canonical_json`) because the Python SDK re-canonicalises
  before verifying.
- ``Authorization: Bearer <prefix><sha256 hex of the hex-decoded key body>`` for SDK → server
  API calls. Servers accept the hashed or the raw key, with or without the prefix.

Everything here is pure: the caller passes the clock (``at`` / ``now``), so tests and
replays are deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

#: ``signkey-<env>-``; ``\w`` as in the reference SDKs (env is ``prod``, ``test``, ``branch``…).
_PREFIX: Final = re.compile(r"^signkey-\w+-")
_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_SIGNATURE_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")

#: Signatures older (or further in the future) than this many seconds are refused.
DEFAULT_MAX_AGE: Final = 300


class SignatureError(ValueError):
    """A request signature is missing, malformed, expired or matches no configured key."""


class SigningKeyError(ValueError):
    """A configured signing key is empty, or its body is not even-length hex."""


def strip_prefix(key: str) -> str:
    """The key without its ``signkey-<env>-`` prefix (unchanged when it has none)."""
    return _PREFIX.sub("", key, count=1)


def _hmac_key(key: str) -> bytes:
    body = strip_prefix(key)
    if not body:
        raise SigningKeyError("signing key is empty")
    return body.encode("utf-8")


def _digest(body: bytes, key: str, at: int) -> str:
    mac = hmac.new(_hmac_key(key), body, hashlib.sha256)
    mac.update(str(at).encode("ascii"))
    return mac.hexdigest()


def sign(body: bytes, key: str, *, at: int) -> str:
    """``t=<at>&s=<hex>`` for ``body`` signed with ``key`` at unix second ``at``.

    The order ``t`` then ``s`` is fixed: some verifiers compare header strings.
    """
    if at < 0:
        raise ValueError(f"signature timestamp must not be negative, got {at}")
    return f"t={at}&s={_digest(body, key, at)}"


def _parse_header(header: str) -> tuple[int, str]:
    """``(t, s)`` from ``t=<t>&s=<hex>`` (any order, unknown parameters ignored)."""
    fields: dict[str, str] = {}
    for part in header.strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise SignatureError(f"malformed signature header: {part!r} is not name=value")
        fields.setdefault(name.strip(), value.strip())
    t, s = fields.get("t"), fields.get("s")
    if s is None:
        raise SignatureError("malformed signature header: no 's' (signature) parameter")
    if t is None:
        raise SignatureError("malformed signature header: no 't' (timestamp) parameter")
    if not _TIMESTAMP.fullmatch(t):
        raise SignatureError(f"malformed signature header: timestamp {t!r} is not unix seconds")
    if not _SIGNATURE_HEX.fullmatch(s):
        raise SignatureError("malformed signature header: 's' is not a hex SHA-256 digest")
    return int(t), s.lower()


def verify(
    header: str | None,
    body: bytes,
    keys: Sequence[str],
    *,
    now: int,
    max_age: int | None = DEFAULT_MAX_AGE,
) -> None:
    """Check ``header`` against ``body``, trying each of ``keys`` in order.

    Pass the primary key first, then the fallback (``INNGEST_SIGNING_KEY_FALLBACK``), so a
    key rotation does not drop requests. ``max_age`` bounds the replay window on both
    sides of ``now`` (clock skew counts the same as age); ``None`` disables the check, as
    the Python SDK does. Raises :class:`SignatureError`; returns nothing when valid.
    """
    if header is None or not header.strip():
        raise SignatureError("missing x-inngest-signature header")
    at, given = _parse_header(header)
    if max_age is not None and abs(now - at) > max_age:
        raise SignatureError(
            f"signature expired: signed at {at}, now {now}, more than {max_age}s apart"
        )
    if not keys:
        raise SignatureError("no signing key is configured to verify the signature")
    matched = False
    for key in keys:
        # Every key is tried, so the time taken does not tell which one matched. A key
        # that cannot sign (empty) matches nothing rather than failing the request.
        try:
            expected = _digest(body, key, at)
        except SigningKeyError:
            continue
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError("signature does not match any configured signing key")


#: The accepted forms of a signing key, for messages.
SIGNING_KEY_FORM: Final = "signkey-<env>-<hex> or hex"


def _key_parts(key: str) -> tuple[str, str]:
    """``(prefix, body)`` of a signing key, the body checked to be even-length hex."""
    match = _PREFIX.match(key)
    prefix = match.group(0) if match else ""
    body = key[len(prefix) :]
    if not body:
        raise SigningKeyError("signing key is empty")
    if not _HEX.fullmatch(body):
        raise SigningKeyError("signing key is not hexadecimal (after its signkey-<env>- prefix)")
    if len(body) % 2:
        raise SigningKeyError(f"signing key has an odd number of hex digits ({len(body)})")
    return prefix, body


def check_signing_key(key: str) -> None:
    """Raise :class:`SigningKeyError` naming the problem unless ``key`` is a usable
    signing key (``signkey-<env>-`` optional, then a non-empty even number of hex digits).

    Servers call it when they start, so that no request meets a malformed key.
    """
    _key_parts(key)


def hashed_key(key: str) -> str:
    """The bearer token for ``key``: prefix (kept) + sha256 hex of the hex-decoded body.

    The raw key never leaves the process in an ``Authorization`` header; the server can
    recompute this from its own copy.
    """
    prefix, body = _key_parts(key)
    return prefix + hashlib.sha256(bytes.fromhex(body)).hexdigest()


def keys_match(presented_bearer: str, configured_key: str) -> bool:
    """Whether a bearer token authenticates as ``configured_key`` (server side).

    Accepts the hashed key (what the SDKs send) or the raw key, each with or without the
    ``signkey-<env>-`` prefix; a leading ``Bearer `` is tolerated. Comparisons are
    constant-time. Total: a malformed ``configured_key`` (which servers refuse at start-up,
    :func:`check_signing_key`) or an odd token matches nothing, and nothing is raised.
    """
    try:
        _, raw = _key_parts(configured_key)
        hashed = strip_prefix(hashed_key(configured_key))
    except SigningKeyError:
        return False
    token = presented_bearer.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    token = strip_prefix(token)
    if not token:
        return False
    given = token.encode("utf-8", "surrogatepass")
    by_hash = hmac.compare_digest(given, hashed.encode("ascii"))
    by_raw = hmac.compare_digest(given, raw.encode("ascii"))
    return by_hash or by_raw


def any_key_matches(presented_bearer: str, configured_keys: Sequence[str]) -> bool:
    """Whether a bearer token authenticates as any of ``configured_keys`` (the primary,
    then a fallback during a rotation). Every key is compared, whichever matches, so the
    time taken does not tell which one did."""
    matched = False
    for key in configured_keys:
        matched |= keys_match(presented_bearer, key)
    return matched
