"""Event ids derived from ``x-inngest-event-id-seed`` (protocol §8.3).

A seed is ``"<unix ms>,<base64 of 10 random bytes>"``, made once per send and reused on
its retries. The n-th event of the send (n from 1) gets the ULID of that time and the
entropy with n added to its last four bytes (big-endian, wrapping), so a retried send
produces the same ids and is recognised as a duplicate.
"""

from __future__ import annotations

import base64
import binascii

import ulid


def ids_from_seed(seed: str, count: int) -> list[str] | None:
    """The ids of ``count`` events for ``seed``, or None if the seed is malformed."""
    stamp_text, _, entropy_text = seed.partition(",")
    try:
        stamp = int(stamp_text)
        entropy = base64.b64decode(entropy_text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(entropy) != 10 or not 0 <= stamp < 2**48:
        return None
    head, tail = entropy[:6], int.from_bytes(entropy[6:], "big")
    ids = []
    for index in range(1, count + 1):
        raw = stamp.to_bytes(6, "big") + head + ((tail + index) % 2**32).to_bytes(4, "big")
        ids.append(str(ulid.ULID.from_bytes(raw)))
    return ids
