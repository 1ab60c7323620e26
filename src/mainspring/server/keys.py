"""The keys a self-hosted server (``mainspring start``) is configured with: their checks at
start-up, and the constant-time comparisons made on every request (protocol §8.3, §9).

An event key travels in the URL path (``POST /e/{key}``), so it is limited to characters
that need no escaping there. Signing keys are checked by
:func:`mainspring.protocol.signing.check_signing_key`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import Final

from mainspring.protocol import signing

#: URL-path-safe ("unreserved") characters, 1 to 256 of them.
_EVENT_KEY: Final = re.compile(r"[A-Za-z0-9._~-]{1,256}")

#: The accepted form of an event key, for messages.
EVENT_KEY_FORM: Final = "1 to 256 characters from A-Z a-z 0-9 . _ ~ -"


def describe(value: str) -> str:
    """What was given, without echoing it: a key may be a secret that ends up in logs."""
    if not value:
        return "an empty value"
    return f"a {len(value)}-character value"


def check_event_key(key: str) -> None:
    """Raise :class:`ValueError` unless ``key`` can be an event key."""
    if not _EVENT_KEY.fullmatch(key):
        raise ValueError(f"expected {EVENT_KEY_FORM}, got {describe(key)}")


def check_signing_keys(keys: Sequence[str]) -> None:
    """Raise :class:`ValueError` naming the first malformed signing key."""
    for position, key in enumerate(keys):
        try:
            signing.check_signing_key(key)
        except signing.SigningKeyError as exc:
            which = "signing key" if position == 0 else "fallback signing key"
            raise ValueError(
                f"{which}: expected {signing.SIGNING_KEY_FORM}, got {describe(key)} ({exc})"
            ) from exc


class EventKeys:
    """The event keys a server accepts on ``POST /e/{key}``.

    :meth:`accepts` compares SHA-256 digests (fixed length, so a key's length does not
    show) with :func:`hmac.compare_digest`, against every configured key each time.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for key in keys:
            try:
                check_event_key(key)
            except ValueError as exc:
                raise ValueError(f"event key: {exc}") from exc
        self._digests = [_digest(key) for key in keys]

    def accepts(self, presented: str) -> bool:
        if not presented:
            return False
        given = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
