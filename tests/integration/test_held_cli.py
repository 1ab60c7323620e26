"""``mainspring dev``/``start`` options for deploys (issue: deploys, rule 4): the grace
period of runs held for a missing function, and the dev server's polling of apps
(``--poll-interval``, ``--no-poll``, as the reference dev server's), which syncs an app
that came back so that its held runs resume."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import httpx
import pytest
import uvicorn

from mainspring import cli
from mainspring.engine.engine import Engine
from mainspring.server.poll import poll_apps

KEY = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options of each engine the command makes; nothing is served."""
    made: list[dict[str, Any]] = []

    def engine(*args: Any, **options: Any) -> Any:
        made.append(options)
        return Engine(*args, **options)

    monkeypatch.setattr(cli, "Engine", engine)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    return made


def dev(tmp_path: pathlib.Path, *flags: str) -> int:
    return cli.main(["dev", "--db", str(tmp_path / "d.db"), "--port", "9", *flags])


@pytest.mark.parametrize(
    ("flags", "seconds"),
    [([], 86_400.0), (["--missing-function-grace", "90m"], 5_400.0)]
    + [(["--missing-function-grace", text], 3_600.0) for text in ("3600", "1h", "0.5h30m")],
)
def test_the_grace_period_is_a_flag(
    tmp_path: pathlib.Path, engines: list[dict[str, Any]], flags: list[str], seconds: float
) -> None:
    assert dev(tmp_path, *flags) == 0
    assert engines[-1]["missing_function_grace"] == seconds
    start = ["--signing-key", KEY, "--event-key", "ek-1", *flags]
    assert cli.main(["start", "--db", str(tmp_path / "s.db"), "--port", "9", *start]) == 0
    assert engines[-1]["missing_function_grace"] == seconds


@pytest.mark.parametrize("value", ["0", "-5", "0s", "soon", "nan", "inf", "1x"])
def test_a_bad_grace_period_is_refused_naming_the_flag(
    tmp_path: pathlib.Path,
    engines: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        dev(tmp_path, f"--missing-function-grace={value}")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --missing-function-grace: expected a positive duration" in err
    assert engines == []


@pytest.mark.parametrize("value", ["0", "-1", "never"])
def test_a_bad_poll_interval_is_refused_naming_the_flag(
    tmp_path: pathlib.Path,
    engines: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    with pytest.raises(SystemExit):
        dev(tmp_path, f"--poll-interval={value}")
    assert "argument --poll-interval: expected a positive number of seconds" in (
        capsys.readouterr().err
    )
    assert engines == []


class Apps(httpx.AsyncBaseTransport):
    """Apps answering sync requests: each PUT is counted; ``down`` ones refuse."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        assert request.method == "PUT"
        self.asked.append(url)
        if url in self.down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})


async def test_polling_asks_every_known_app_again_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    apps = Apps()
    a, b = "http://a/api/inngest", "http://b/api/inngest"
    apps.down.add(a)
    async with httpx.AsyncClient(transport=apps) as http:
        with caplog.at_level(logging.INFO, logger="mainspring.cli"):
            task = asyncio.create_task(
                poll_apps([a], known=lambda: [a, b], interval=0.01, http=http)
            )
            for _ in range(500):
                if apps.asked.count(a) >= 3 and apps.asked.count(b) >= 3:
                    break
                await asyncio.sleep(0.01)
            apps.down.clear()  # a comes back
            seen = len(apps.asked)
            for _ in range(500):
                if len(apps.asked) > seen + 4:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert apps.asked.count(a) >= 3
    assert apps.asked.count(b) >= 3
    messages = [r.getMessage() for r in caplog.records]
    # One warning per outage, however many rounds it lasts.
    assert len([m for m in messages if m.startswith(f"app {a} did not sync")]) == 1
    assert f"app {a} synced" in messages


async def test_without_polling_an_app_is_asked_only_until_it_has_synced() -> None:
    apps = Apps()
    a = "http://a/api/inngest"
    apps.down.add(a)
    async with httpx.AsyncClient(transport=apps) as http:
        task = asyncio.create_task(
            poll_apps([a], known=lambda: [a, "http://b/"], interval=0.01, poll=False, http=http)
        )
        for _ in range(500):
            if apps.asked.count(a) >= 2:
                break
            await asyncio.sleep(0.01)
        apps.down.clear()
        await asyncio.wait_for(task, timeout=5)  # returns once a has synced
    assert "http://b/" not in apps.asked
    assert apps.asked[-1] == a
