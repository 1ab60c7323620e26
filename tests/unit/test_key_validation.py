"""Keys are checked when the server starts, and no request can reach a key-parsing error.

``mainspring start`` refuses a malformed ``--signing-key``, ``--signing-key-fallback`` or
``--event-key`` with exit code 2 and a message naming the option and the expected form;
the bearer-key comparison is total (a malformed configured key matches nothing) and event
keys are compared in constant time, every configured key each time.
"""

from __future__ import annotations

import hmac
import pathlib
from typing import Any

import httpx
import pytest
import uvicorn

import mainspring as inngest
from mainspring import cli
from mainspring.engine.engine import Engine
from mainspring.protocol import signing
from mainspring.server import keys as server_keys
from mainspring.server.app import create_app

KEY = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
FALLBACK = "signkey-prod-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``uvicorn.run`` would have served (nothing listens in these tests)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    for name in ("INNGEST_SIGNING_KEY", "INNGEST_SIGNING_KEY_FALLBACK", "INNGEST_EVENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    return seen


def start(tmp_path: pathlib.Path, *flags: str) -> int:
    return cli.main(["start", "--db", str(tmp_path / "s.db"), "--port", "9", *flags])


@pytest.mark.parametrize("key", ["mysecretpassword", "signkey-prod-abc", "", "signkey-prod-"])
def test_start_refuses_a_malformed_signing_key(
    tmp_path: pathlib.Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        start(tmp_path, "--signing-key", key, "--event-key", "ek-1")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--signing-key: expected signkey-<env>-<hex> or hex" in err
    assert "app" not in served  # nothing was served
    if key:
        assert key not in err.split("error:", 1)[1]  # a secret-ish value is described, not echoed


def test_start_refuses_a_malformed_fallback_key(
    tmp_path: pathlib.Path, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        start(tmp_path, "--signing-key", KEY, "--signing-key-fallback", "xyz", "--event-key", "k")
    assert stopped.value.code == 2
    assert "--signing-key-fallback: expected signkey-<env>-<hex> or hex" in capsys.readouterr().err
    assert "app" not in served


def test_start_reads_a_malformed_fallback_key_from_the_environment(
    tmp_path: pathlib.Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", "signkey-prod-abc")
    with pytest.raises(SystemExit) as stopped:
        start(tmp_path, "--signing-key", KEY, "--event-key", "k")
    assert stopped.value.code == 2
    assert "--signing-key-fallback" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["", "two words", "a/b", "x" * 300, "é"])
def test_start_refuses_a_malformed_event_key(
    tmp_path: pathlib.Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        start(tmp_path, "--signing-key", KEY, "--event-key", "good", "--event-key", key)
    assert stopped.value.code == 2
    assert "--event-key: expected" in capsys.readouterr().err
    assert "app" not in served


async def test_bearer_tokens_of_the_primary_or_the_fallback_key_are_accepted(
    tmp_path: pathlib.Path, served: dict[str, Any]
) -> None:
    flags = ("--signing-key", KEY, "--signing-key-fallback", FALLBACK, "--event-key", "ek-1")
    assert start(tmp_path, *flags) == 0
    app = served["app"]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://s") as http,
    ):
        for key in (KEY, FALLBACK):
            bearer = {"authorization": f"Bearer {signing.hashed_key(key)}"}
            assert (await http.get("/v1/events", headers=bearer)).status_code == 200
        assert (await http.get("/v1/events")).status_code == 401
        wrong = {"authorization": "Bearer mysecretpassword"}
        assert (await http.get("/v1/events", headers=wrong)).status_code == 401


def test_start_takes_the_keys_from_the_environment(
    tmp_path: pathlib.Path, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_SIGNING_KEY", KEY)
    monkeypatch.setenv("INNGEST_EVENT_KEY", "ek-env")
    assert start(tmp_path) == 0
    assert "app" in served


def test_dev_takes_no_keys(
    tmp_path: pathlib.Path, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["dev", "--db", str(tmp_path / "d.db"), "--signing-key", KEY])
    assert stopped.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("configured", ["mysecretpassword", "signkey-prod-abc", "", "ab cd"])
def test_keys_match_is_false_for_a_malformed_configured_key(configured: str) -> None:
    assert signing.keys_match(KEY, configured) is False
    assert signing.keys_match(configured, configured) is False


@pytest.mark.parametrize("presented", ["", "Bearer ", "signkey-x-", "é" * 64, "\x00" * 64])
def test_keys_match_is_false_for_odd_tokens(presented: str) -> None:
    assert signing.keys_match(presented, KEY) is False


def test_any_bearer_matches_either_configured_key() -> None:
    assert signing.any_key_matches(signing.hashed_key(FALLBACK), [KEY, FALLBACK])
    assert signing.any_key_matches(KEY, [KEY, "bad"])
    assert not signing.any_key_matches(KEY, ["bad", FALLBACK])
    assert not signing.any_key_matches(KEY, [])


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("mysecretpassword", "not hexadecimal"),
        ("signkey-prod-abc", "odd number of hex digits"),
        ("", "empty"),
        ("signkey-prod-", "empty"),
    ],
)
def test_check_signing_key_names_the_problem(key: str, problem: str) -> None:
    with pytest.raises(signing.SigningKeyError, match=problem):
        signing.check_signing_key(key)


@pytest.mark.parametrize("key", [KEY, KEY.removeprefix("signkey-prod-"), "00"])
def test_check_signing_key_accepts_well_formed_keys(key: str) -> None:
    signing.check_signing_key(key)


def test_verify_treats_a_malformed_key_as_no_match() -> None:
    header = signing.sign(b"{}", KEY, at=100)
    signing.verify(header, b"{}", ["", KEY], now=100)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(header, b"{}", [""], now=100)


def test_create_app_refuses_malformed_keys(tmp_path: pathlib.Path) -> None:
    engine = Engine(inngest.Client(app_id="s"), [], database=tmp_path / "s.db")
    with pytest.raises(ValueError, match="signing key"):
        create_app(engine, dev=False, signing_key="mysecretpassword", event_keys=frozenset({"k"}))
    with pytest.raises(ValueError, match="signing key"):
        create_app(engine, dev=False, signing_key=KEY, signing_key_fallback="xyz")
    with pytest.raises(ValueError, match="event key"):
        create_app(engine, dev=False, signing_key=KEY, event_keys=frozenset({"a b"}))


def test_event_keys_are_compared_in_constant_time_against_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = server_keys.EventKeys(["first", "second", "third"])
    assert keys.accepts("first")
    assert len(calls) == 3  # no early exit on the first match
    assert {len(a) for a, _ in calls} == {32}  # digests: the length of a key does not show
    calls.clear()
    assert not keys.accepts("fourth")
    assert len(calls) == 3
    assert not keys.accepts("")


@pytest.mark.parametrize("key", ["NO_EVENT_KEY_SET", "ek-1", "a.b~c", "0" * 256])
def test_well_formed_event_keys(key: str) -> None:
    server_keys.check_event_key(key)


@pytest.mark.parametrize("key", ["", "a b", "a/b", "0" * 257, "é", "a?b"])
def test_malformed_event_keys(key: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        server_keys.check_event_key(key)
