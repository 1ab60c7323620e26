"""Compatibility: ``step.ai.infer`` of the official ``inngest`` SDK (0.5.19) against
``mainspring dev``, which makes the provider calls (to a fake provider on 127.0.0.1 that
this test runs and inspects).

The app (``tests/e2e/official_ai_app.py``) is served on uvicorn; the server runs with a
0.2 s retry backoff. After the runs, the server's database files are read byte by byte:
the provider key must be in none of them.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator

import pytest

from tests.ai_provider import OFFICIAL_APP_KEY as KEY
from tests.ai_provider import FakeProvider, fake_provider
from tests.e2e.support import OfficialServers, official_servers

pytestmark = pytest.mark.slow


class Servers(OfficialServers):
    provider: FakeProvider
    workdir: pathlib.Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    def app(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.e2e.official_ai_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]

    workdir = tmp_path_factory.mktemp("official-ai")
    with (
        fake_provider() as provider,
        official_servers(app, workdir, prefix="official-ai", app_id="official-ai-app") as base,
    ):
        servers = Servers(base.url, base.sender, base.prefix, base.app_id)
        servers.provider = provider
        servers.workdir = workdir
        yield servers


def _run(servers: Servers, name: str, path: str) -> dict[str, object]:
    event = servers.send(f"official-ai/{name}", {"base_url": f"{servers.provider.url}{path}"})
    return servers.finished_run(event, timeout=20)


def test_infer_returns_the_providers_answer(servers: Servers) -> None:
    run = _run(servers, "infer", "/infer/v1")
    assert run["status"] == "Completed", run
    [seen] = servers.provider.seen("/infer/")
    assert seen.path == "/infer/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {"messages": [{"role": "user", "content": "async"}], "model": "gpt-fake"}
    output = run["output"]
    assert isinstance(output, dict)
    assert output["answer"] == {
        "id": "chatcmpl-fake",
        "model": "gpt-fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "echo: async"}}],
    }
    assert output["loud"] == "ECHO: ASYNC"


def test_infer_from_a_sync_function(servers: Servers) -> None:
    run = _run(servers, "infer.sync", "/sync/v1")
    assert run["status"] == "Completed", run
    [seen] = servers.provider.seen("/sync/")
    assert seen.path == "/sync/v1/messages"
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert run["output"] == {"content": "echo: sync", "loud": "ECHO: SYNC"}


def test_a_failed_call_is_retried(servers: Servers) -> None:
    run = _run(servers, "flaky", "/fail-once/official/v1")
    assert run["status"] == "Completed", run
    # A 500, then the answer; the code after the step runs in a fresh call (attempt 0).
    assert len(servers.provider.seen("/fail-once/official/")) == 2
    assert run["output"] == {"content": "echo: again", "attempt": 0}


def test_a_refused_call_raises_in_the_function(servers: Servers) -> None:
    run = _run(servers, "refused", "/status-403/v1")
    assert run["status"] == "Completed", run
    assert len(servers.provider.seen("/status-403/")) == 1  # a 4xx is not retried
    output = run["output"]
    assert isinstance(output, dict)
    assert output["name"] == "GatewayError"
    assert "HTTP 403" in str(output["message"])
    assert KEY not in str(output["message"])


def test_ai_steps_in_a_parallel_group(servers: Servers) -> None:
    run = _run(servers, "parallel", "/parallel")
    assert run["status"] == "Completed", run
    assert run["output"] == ["echo: a", "echo: b"]
    seen = servers.provider.seen("/parallel/")
    assert sorted(s.path for s in seen) == ["/parallel/models/gemini-fake:generateContent"] * 2
    assert all(s.query == {"key": KEY} for s in seen)


def test_the_key_is_in_no_database_file(servers: Servers) -> None:
    # A retried call and a refused one (whose error body echoes the key) go through first.
    assert _run(servers, "flaky", "/fail-once/db/v1")["status"] == "Completed"
    assert _run(servers, "refused", "/status-401/v1")["status"] == "Completed"
    files = sorted(servers.workdir.glob("dev.db*"))
    assert files, list(servers.workdir.iterdir())
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
