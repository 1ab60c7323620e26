from __future__ import annotations

import ulid

from mainspring.protocol.event_ids import ids_from_seed


def test_ids_follow_the_seed_with_the_index_added() -> None:
    ids = ids_from_seed("1767225600000,AAECAwQFBgcICQ==", 3)
    assert ids is not None
    raw = [ulid.ULID.from_str(i).bytes for i in ids]
    assert all(r[:6] == (1767225600000).to_bytes(6, "big") for r in raw)
    assert all(r[6:12] == bytes([0, 1, 2, 3, 4, 5]) for r in raw)
    # Entropy tail 0x06070809 plus the 1-based index.
    assert [int.from_bytes(r[12:], "big") - 0x06070809 for r in raw] == [1, 2, 3]
    assert ids_from_seed("1767225600000,AAECAwQFBgcICQ==", 3) == ids


def test_malformed_seeds_are_ignored() -> None:
    assert ids_from_seed("not-a-seed", 1) is None
    assert ids_from_seed("123,short", 1) is None
    assert ids_from_seed("abc,AAECAwQFBgcICQ==", 1) is None
