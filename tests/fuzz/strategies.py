"""Hypothesis strategies for hostile input: JSON of random shapes, values at and past every
limit the server has, and the many ways to encode them wrongly."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from mainspring.engine.intake import (
    MAX_DATA_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_ID,
    MAX_EVENT_NAME,
    MAX_EVENT_TS,
    MAX_EVENTS_PER_SEND,
    MIN_EVENT_TS,
)
from mainspring.server import limits


def around(*limits_: int) -> st.SearchStrategy[int]:
    """Each limit, one below and one past it."""
    return st.sampled_from(sorted({n + d for n in limits_ for d in (-1, 0, 1)}))


#: Numbers that break parsers and range checks: signs, 32/53/64-bit edges, far past them.
# fmt: off
EDGE_INTS = st.sampled_from([
    0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1,
    2**64, 10**30, -(10**30),
])
# fmt: on
EDGE_FLOATS = st.sampled_from([0.5, -0.0, 1e20, 1e308, 5e-324, -1e308, 1.0, 1.5e300])
INTS = st.one_of(EDGE_INTS, st.integers(), st.integers(min_value=-(2**70), max_value=2**70))

#: Text of any code point (lone surrogates too: they cannot be encoded as UTF-8, and are
#: sent escaped or as the bytes Python's ``surrogatepass`` makes).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# fmt: off
AWKWARD_TEXT = st.sampled_from([
    "", " ", "\t\n", "\x00", "\u202e\u2066", "𝄞" * 3, "' OR 1=1 --", "../../etc", "%00", "\ufeff",
    "null", "true", "[]", "{}", "inngest/function.invoked", "inngest/x", "a/*", "é" * 300,
])
# fmt: on
TEXT = st.one_of(ANY_TEXT, AWKWARD_TEXT)


def long_text(*lengths: int) -> st.SearchStrategy[str]:
    """Text of each length, one short and one past it (in ASCII and in 2-byte UTF-8)."""
    return st.builds(lambda n, char: char * n, around(*lengths), st.sampled_from(["n", "é", "𝄞"]))


SCALARS = st.one_of(st.none(), st.booleans(), INTS, EDGE_FLOATS, st.floats(allow_nan=False), TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=30,
)
OBJECTS = st.dictionaries(TEXT, JSON, max_size=6)


def nested_text(levels: int, opener: str = '{"a": ', closer: str = "}", core: str = "{}") -> str:
    """JSON text nesting ``levels`` deep (beyond what any encoder here would write)."""
    return opener * (levels - 1) + core + closer * (levels - 1)


#: Depths at and past the server's limits (the data's, the body's) and far past any
#: parser's recursion limit.
DEPTHS = st.one_of(around(MAX_DATA_DEPTH, limits.MAX_BODY_DEPTH), st.sampled_from([254, 2000]))


def deep_json_text() -> st.SearchStrategy[str]:
    return st.builds(
        lambda levels, brackets: (
            nested_text(levels, "[", "]", "[]") if brackets else nested_text(levels)
        ),
        DEPTHS,
        st.booleans(),
    )


def big_array_text() -> st.SearchStrategy[str]:
    """A JSON array of many small items, at and past the events-per-send limit."""
    return st.builds(
        lambda count, item: "[" + ",".join([item] * count) + "]",
        st.one_of(around(MAX_EVENTS_PER_SEND), st.sampled_from([0, 1, 100_000])),
        st.sampled_from(["0", "null", '{"name":"fuzz/bulk"}', '"x"', "[]"]),
    )


# -- encodings -----------------------------------------------------------------------------


def dumps(value: Any, *, ascii_only: bool, spaced: bool) -> bytes:
    """JSON text for any value: integers of any size, lone surrogates escaped (ASCII) or
    as ``surrogatepass`` bytes (not UTF-8 at all)."""
    text = json.dumps(value, ensure_ascii=ascii_only, separators=None if spaced else (",", ":"))
    return text.encode("utf-8", "surrogatepass")


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """``values`` as JSON bytes, mostly well encoded, sometimes in another encoding, with
    a byte order mark, truncated, or with trailing garbage."""

    def build(value: Any, ascii_only: bool, spaced: bool, how: str, cut: int) -> bytes:
        body = dumps(value, ascii_only=ascii_only, spaced=spaced)
        if how == "utf-16":
            return body.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
        if how == "bom":
            return b"\xef\xbb\xbf" + body
        if how == "latin-1":
            return body.decode("utf-8", "surrogatepass").encode("latin-1", "replace")
        if how == "truncated":
            return body[: max(0, len(body) - 1 - cut % max(1, len(body)))]
        if how == "trailing":
            return body + b"\x00garbage"
        return body

    how = st.sampled_from(["plain"] * 6 + ["utf-16", "bom", "latin-1", "truncated", "trailing"])
    return st.builds(build, values, st.booleans(), st.booleans(), how, st.integers(0, 50))


#: Bodies that are not JSON at all.
# fmt: off
NOT_JSON = st.one_of(st.binary(max_size=200), st.sampled_from([
    b"", b" ", b"\n", b"null", b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[1,]", b"{,}",
    b'{"a":1,"a":2}', b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b'"\\ud800"', b"\x00",
    b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--", b"a=1&b=2",
]))
# fmt: on

# fmt: off
CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8",
    "application/json; charset=utf-16", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream", "application/xml", "*/*",
    "application/json;;;", "\u00e9",
])
# fmt: on


def content_headers(content_type: str | None) -> dict[str, str]:
    return {} if content_type is None else {"content-type": content_type}


# -- URL pieces ----------------------------------------------------------------------------


def quoted(text: str) -> str:
    """``text`` percent-encoded for a path segment or query value (lone surrogates as the
    bytes ``surrogatepass`` makes: invalid UTF-8 once decoded)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


#: Percent-escapes that are malformed or decode to something awkward.
RAW_ESCAPES = st.sampled_from(
    ["%", "%zz", "%ff", "%c0%80", "%ed%a0%80", "%00", "%2F", "%2e%2e", "%25", "%u0041", "+", "%20"]
)


def segment(known: list[str] | None = None) -> st.SearchStrategy[str]:
    """A path segment (already percent-encoded): random text, integers, ULID-shaped
    strings, malformed escapes, long runs, or one of ``known`` altered."""
    ulid_like = st.text(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz", min_size=25, max_size=27
    )
    options = [
        ANY_TEXT.filter(bool).map(quoted),
        AWKWARD_TEXT.filter(bool).map(quoted),
        INTS.map(str),
        ulid_like,
        RAW_ESCAPES,
        long_text(255, 4096).map(quoted),
    ]
    if known:
        options.append(st.builds(_alter, st.sampled_from(known), st.integers(0, 5)).map(quoted))
    return st.one_of(options)


def _alter(value: str, how: int) -> str:
    """Near misses of a real id: a different case, a character changed, cut or added."""
    if how == 0:
        return value.lower()
    if how == 1:
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    if how == 2:
        return value[:-1]
    if how == 3:
        return value + "0"
    if how == 4:
        return " " + value
    return value + "/x"


def query_string(
    names: list[str], values: Callable[[str], st.SearchStrategy[str]]
) -> st.SearchStrategy[str]:
    """A query string of some of ``names`` (repeated, missing, or unknown ones too), each
    value from ``values(name)`` percent-encoded, or a malformed escape."""

    def pair(name: str) -> st.SearchStrategy[str]:
        value = st.one_of(values(name).map(quoted), RAW_ESCAPES)
        return value.map(lambda v: f"{name}={v}")

    every = [*names, "unknown", ""]
    pairs = st.lists(st.sampled_from(every).flatmap(pair), max_size=4)
    return pairs.map("&".join)


# -- events ----------------------------------------------------------------------------------

NAMES = st.one_of(
    TEXT,
    long_text(MAX_EVENT_NAME),
    st.just("fuzz/event"),
    INTS,
    st.none(),
    st.booleans(),
    st.lists(TEXT, max_size=2),
)
IDS = st.one_of(TEXT, long_text(MAX_EVENT_ID), INTS, st.none(), OBJECTS)
TIMESTAMPS = st.one_of(
    around(MIN_EVENT_TS, MAX_EVENT_TS),
    EDGE_INTS,
    EDGE_FLOATS,
    st.sampled_from([float(MIN_EVENT_TS), MIN_EVENT_TS + 0.5, "1700000000000", True, None]),
)
DATA = st.one_of(
    OBJECTS,
    JSON,
    st.none(),
    st.builds(lambda n: {"big": "x" * n}, around(MAX_EVENT_BYTES - 40, MAX_EVENT_BYTES)),
    st.builds(lambda n: {"list": [0] * n}, st.sampled_from([10_000, 100_000])),
)


def events() -> st.SearchStrategy[dict[str, Any]]:
    """One event-shaped object: any of its fields, with edge values, plus stray keys."""
    return st.fixed_dictionaries(
        {},
        optional={
            "name": NAMES,
            "data": DATA,
            "id": IDS,
            "ts": TIMESTAMPS,
            "user": JSON,
            "v": JSON,
            "_inngest": JSON,
        },
    )
