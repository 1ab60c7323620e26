"""Request signatures and bearer keys (protocol §9), checked against independent HMACs."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mainspring.protocol.signing import (
    SignatureError,
    SigningKeyError,
    check_signing_key,
    hashed_key,
    keys_match,
    sign,
    strip_prefix,
    verify,
)

KEY_BODY = "8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
KEY = f"signkey-test-{KEY_BODY}"
OTHER = "signkey-test-" + "ab" * 32
BODY = b'{"event":{"name":"app/hello"},"steps":{}}'
T = 1_700_000_000
# Computed once with `openssl dgst -sha256 -hmac <KEY_BODY>` over BODY followed by "1700000000".
LITERAL_SIGNATURE = "83490af82be42204fa0d5e44e0048ad4dbac115be7bf5d52e3d7ff5dfaa4c0d1"
# Computed once with `xxd -r -p | sha256sum` over KEY_BODY.
LITERAL_HASHED_BODY = "e4bf4a2e7f55c7eb954b6e72f8f69628fbc409fe7da6d0f6958770987dcf0e02"


def _expected(body: bytes, key_text: str, t: int) -> str:
    digest = hmac.new(key_text.encode(), body + str(t).encode(), hashlib.sha256).hexdigest()
    return f"t={t}&s={digest}"


# -- sign ----------------------------------------------------------------------------------------


def test_sign_matches_the_pasted_vector() -> None:
    assert sign(BODY, KEY, at=T) == f"t={T}&s={LITERAL_SIGNATURE}"


@pytest.mark.parametrize(
    ("body", "t"), [(b"", 0), (b"{}", 1), (b'{"a":"\xc3\xa9"}', 1_234_567_890), (BODY, T + 1)]
)
def test_sign_is_hmac_of_body_then_timestamp_keyed_by_the_key_text(body: bytes, t: int) -> None:
    assert sign(body, KEY, at=t) == _expected(body, KEY_BODY, t)


def test_the_key_text_is_not_hex_decoded() -> None:
    decoded = hmac.new(bytes.fromhex(KEY_BODY), BODY + str(T).encode(), hashlib.sha256)
    assert sign(BODY, KEY, at=T) != f"t={T}&s={decoded.hexdigest()}"


def test_prefix_is_irrelevant_to_the_signature() -> None:
    assert sign(BODY, KEY, at=T) == sign(BODY, KEY_BODY, at=T)
    assert sign(BODY, KEY, at=T) == sign(BODY, f"signkey-prod-{KEY_BODY}", at=T)


def test_sign_rejects_empty_key_and_negative_time() -> None:
    with pytest.raises(SigningKeyError, match="empty"):
        sign(BODY, "signkey-prod-", at=T)
    with pytest.raises(ValueError, match="negative"):
        sign(BODY, KEY, at=-1)


@pytest.mark.parametrize(
    ("key", "stripped"),
    [
        (KEY, KEY_BODY),
        ("signkey-prod-abc", "abc"),
        ("signkey-branch_1-abc", "abc"),
        ("abc", "abc"),
        ("signkey-abc", "signkey-abc"),  # no env part: not a prefix
        ("xsignkey-prod-abc", "xsignkey-prod-abc"),
    ],
)
def test_strip_prefix(key: str, stripped: str) -> None:
    assert strip_prefix(key) == stripped


# -- verify --------------------------------------------------------------------------------------


def test_verify_accepts_a_fresh_signature() -> None:
    verify(sign(BODY, KEY, at=T), BODY, [KEY], now=T + 10)
    verify(f"t={T}&s={LITERAL_SIGNATURE}", BODY, [KEY_BODY], now=T)
    # Parameter order and case of the hex do not matter.
    verify(f"s={LITERAL_SIGNATURE.upper()}&t={T}", BODY, [KEY], now=T)


@pytest.mark.parametrize(
    "tampered",
    [
        BODY + b" ",
        BODY.replace(b"hello", b"hellO"),
        b"",
    ],
)
def test_verify_rejects_a_tampered_body(tampered: bytes) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(sign(BODY, KEY, at=T), tampered, [KEY], now=T)


def test_verify_rejects_a_tampered_signature_or_timestamp() -> None:
    flipped = LITERAL_SIGNATURE[:-1] + ("0" if LITERAL_SIGNATURE[-1] != "0" else "1")
    with pytest.raises(SignatureError, match="does not match"):
        verify(f"t={T}&s={flipped}", BODY, [KEY], now=T)
    with pytest.raises(SignatureError, match="does not match"):
        verify(f"t={T + 1}&s={LITERAL_SIGNATURE}", BODY, [KEY], now=T)


def test_verify_rejects_the_wrong_key() -> None:
    with pytest.raises(SignatureError, match="does not match any configured signing key"):
        verify(sign(BODY, KEY, at=T), BODY, [OTHER], now=T)


@pytest.mark.parametrize("keys", [[OTHER, KEY], [KEY, OTHER], [KEY_BODY]])
def test_verify_tries_every_key(keys: list[str]) -> None:
    verify(sign(BODY, KEY, at=T), BODY, keys, now=T)


def test_verify_uses_the_fallback_after_rotation() -> None:
    signed_with_new = sign(BODY, OTHER, at=T)
    verify(signed_with_new, BODY, [KEY, OTHER], now=T)
    with pytest.raises(SignatureError):
        verify(signed_with_new, BODY, [KEY], now=T)


def test_verify_expiry_window() -> None:
    header = sign(BODY, KEY, at=T)
    verify(header, BODY, [KEY], now=T + 300)
    verify(header, BODY, [KEY], now=T - 300)
    with pytest.raises(SignatureError, match="expired"):
        verify(header, BODY, [KEY], now=T + 301)
    with pytest.raises(SignatureError, match="expired"):
        verify(header, BODY, [KEY], now=T - 301)  # from the future: clock skew or forgery
    with pytest.raises(SignatureError, match="expired"):
        verify(header, BODY, [KEY], now=T + 61, max_age=60)
    verify(header, BODY, [KEY], now=T + 10**6, max_age=None)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_verify_requires_the_header(header: str | None) -> None:
    with pytest.raises(SignatureError, match="missing x-inngest-signature"):
        verify(header, BODY, [KEY], now=T)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (f"t={T}", "no 's'"),
        (f"s={LITERAL_SIGNATURE}", "no 't'"),
        (f"t=soon&s={LITERAL_SIGNATURE}", "not unix seconds"),
        (f"t=-5&s={LITERAL_SIGNATURE}", "not unix seconds"),
        (f"t={T}&s=abc", "not a hex SHA-256"),
        (f"t={T}&s={'z' * 64}", "not a hex SHA-256"),
        (f"t={T},s={LITERAL_SIGNATURE}", "no 's'"),  # the old comma form
        ("garbage", "not name=value"),
    ],
)
def test_verify_names_a_malformed_header(header: str, problem: str) -> None:
    with pytest.raises(SignatureError, match=f"malformed signature header: .*{problem}"):
        verify(header, BODY, [KEY], now=T)


def test_verify_without_keys() -> None:
    with pytest.raises(SignatureError, match="no signing key"):
        verify(sign(BODY, KEY, at=T), BODY, [], now=T)


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)
    assert issubclass(SigningKeyError, ValueError)


# -- bearer keys ---------------------------------------------------------------------------------


def test_hashed_key_matches_the_pasted_vector() -> None:
    assert hashed_key(KEY) == f"signkey-test-{LITERAL_HASHED_BODY}"
    assert hashed_key(KEY_BODY) == LITERAL_HASHED_BODY


@pytest.mark.parametrize("body", ["00", "deadBEEF", "ab" * 32])
def test_hashed_key_is_sha256_of_the_decoded_body(body: str) -> None:
    expected = hashlib.sha256(bytes.fromhex(body)).hexdigest()
    assert hashed_key(f"signkey-branch-{body}") == f"signkey-branch-{expected}"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("signkey-prod-abc", "odd number of hex digits"),
        ("abcdefg0", "not hexadecimal"),
        ("ab cd", "not hexadecimal"),  # bytes.fromhex alone would accept the space
        ("signkey-prod-", "empty"),
        ("", "empty"),
    ],
)
def test_hashed_key_rejects_malformed_keys(key: str, problem: str) -> None:
    with pytest.raises(SigningKeyError, match=problem):
        hashed_key(key)


@pytest.mark.parametrize(
    "presented",
    [
        f"signkey-test-{LITERAL_HASHED_BODY}",
        LITERAL_HASHED_BODY,
        f"signkey-prod-{LITERAL_HASHED_BODY}",  # any prefix is stripped
        KEY,
        KEY_BODY,
        f"Bearer {LITERAL_HASHED_BODY}",
    ],
)
def test_keys_match_accepts_hashed_or_raw_with_or_without_prefix(presented: str) -> None:
    assert keys_match(presented, KEY)
    assert keys_match(presented, KEY_BODY)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "signkey-test-",
        hashed_key(OTHER),
        OTHER,
        LITERAL_HASHED_BODY[:-1],
        hashlib.sha256(KEY_BODY.encode()).hexdigest(),  # hash of the text, not the bytes
    ],
)
def test_keys_match_refuses_anything_else(presented: str) -> None:
    assert not keys_match(presented, KEY)


def test_keys_match_rejects_a_malformed_configured_key() -> None:
    """A malformed key never matches and never raises: servers refuse it at start-up
    (``check_signing_key``), and no request can reach a key-parsing error."""
    assert keys_match(KEY, "signkey-prod-xyz") is False
    with pytest.raises(SigningKeyError):
        check_signing_key("signkey-prod-xyz")
