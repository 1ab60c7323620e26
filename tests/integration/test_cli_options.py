"""``mainspring dev`` hands its event loop and HTTP parser choices to uvicorn."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import uvicorn

from mainspring import cli


@pytest.mark.parametrize(
    ("flags", "loop", "http"),
    [
        ([], "auto", "auto"),  # uvloop and httptools, both dependencies, where installed
        (["--loop", "asyncio", "--http", "h11"], "asyncio", "h11"),
        (["--loop", "uvloop", "--http", "httptools"], "uvloop", "httptools"),
    ],
)
def test_dev_passes_loop_and_http_to_uvicorn(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    loop: str,
    http: str,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    assert cli.main(["dev", "--db", str(tmp_path / "dev.db"), "--port", "9", *flags]) == 0
    assert seen["loop"] == loop
    assert seen["http"] == http
    assert seen["port"] == 9


def test_dev_refuses_an_unknown_loop(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["dev", "--loop", "trio"])
    assert "invalid choice: 'trio'" in capsys.readouterr().err


def test_dev_refuses_a_database_url_with_a_message_not_a_traceback(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    with pytest.raises(SystemExit) as refused:
        cli.main(["dev", "--db", "postgresql://u:pw@127.0.0.1/test", "--port", "9"])
    message = str(refused.value.code)
    assert message.startswith("mainspring: database=postgresql://...: a database URL")
    assert "pw@" not in message
    assert list(tmp_path.iterdir()) == []
