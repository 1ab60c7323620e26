"""``mainspring dev`` hands its event loop and HTTP parser choices to uvicorn."""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

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
    # uvicorn's own protocol for that parser, sending each answer in one write.
    assert issubclass(seen["http"], import_from_string(HTTP_PROTOCOLS[http]))
    assert seen["http"].__name__.startswith("OneWrite")
    assert seen["port"] == 9


def test_dev_refuses_an_unknown_loop(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["dev", "--loop", "trio"])
    assert "invalid choice: 'trio'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("mysql://u:pw@127.0.0.1/test", "mainspring: database=mysql://...: not a supported"),
        (
            "postgresql://u:pw@127.0.0.1:1/test",
            "mainspring: cannot connect to PostgreSQL at 127.0.0.1:1 (database 'test', user 'u')",
        ),
    ],
)
def test_dev_refuses_a_bad_database_with_a_message_not_a_traceback(
    database: str,
    expected: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    with pytest.raises(SystemExit) as refused:
        cli.main(["dev", "--database", database, "--port", "9"])
    message = str(refused.value.code)
    assert message.startswith(expected)
    assert "pw@" not in message
    assert list(tmp_path.iterdir()) == []


async def test_dev_takes_its_database_from_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: apps.append(app))
    monkeypatch.setenv("MAINSPRING_DATABASE_URL", str(tmp_path / "from-env.db"))
    assert cli.main(["dev", "--port", "9", "--no-poll"]) == 0
    app = apps[0]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as http:
            options = (await http.get("/dev")).json()["startOpts"]
    assert options["database"] == str(tmp_path / "from-env.db")
    assert (tmp_path / "from-env.db").exists()


@pytest.mark.parametrize(("flags", "plans"), [([], True), (["--no-parallel-plans"], False)])
def test_dev_runs_parallel_plans_in_one_call_unless_told_not_to(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], plans: bool
) -> None:
    """The engine the server builds gets the choice (``/dev`` shows it too)."""
    from mainspring.engine.engine import Engine

    built: list[dict[str, Any]] = []
    original = Engine.__init__

    def recording(self: Engine, *args: Any, **options: Any) -> None:
        built.append(options)
        original(self, *args, **options)

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    monkeypatch.setattr(Engine, "__init__", recording)
    assert cli.main(["dev", "--db", str(tmp_path / "dev.db"), "--port", "9", *flags]) == 0
    assert built[0]["parallel_plans"] is plans
