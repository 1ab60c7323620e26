"""Compatibility: the official TypeScript SDK (``inngest`` 4 on npm) as a real client of
``mainspring dev``.

The app (``tests/e2e/ts_app/app.mjs``) is served by Node's http server; the SDK
checkpoints by default, running successive steps in one call and recording them with
``POST /v1/checkpoint/{run}/async`` (protocol §13). The app counts the call requests it
receives per run, so a test can tell the steps did not take a call each.

Its npm dependencies are installed on first use (``npm ci`` into ``ts_app/node_modules``,
which git ignores). Without node and npm the module is skipped, or fails under ``CI``
(``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support import OfficialServers, official_servers

APP_DIR = pathlib.Path(__file__).resolve().parent / "ts_app"

#: The SDK's own floor (its package.json's engines).
NODE_MAJOR = 20


def _node_problem() -> str | None:
    if NODE is None or NPM is None:
        return "node and npm are needed for the TypeScript SDK's tests (apt-get install nodejs npm)"
    version = subprocess.run(
        [NODE, "-p", "process.versions.node"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.split(".")[0]) < NODE_MAJOR:
        return f"the TypeScript SDK needs node {NODE_MAJOR} or later, found {version}"
    return None


NODE, NPM = shutil.which("node"), shutil.which("npm")
if (problem := _node_problem()) is not None:
    if os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem, allow_module_level=True)


def install() -> None:
    """The app's locked dependencies, unless installed already."""
    if (APP_DIR / "node_modules" / "inngest" / "package.json").exists():
        return
    subprocess.run(
        [str(NPM), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=APP_DIR,
        check=True,
        timeout=600,
    )


class Servers(OfficialServers):
    app_port: int = 0

    def calls(self, run_id: str) -> int:
        """How many call requests the server made for ``run_id``."""
        stats = httpx.get(f"http://127.0.0.1:{self.app_port}/stats?run={run_id}", timeout=5)
        count: int = stats.json()["calls"]
        return count


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    install()
    ports: list[int] = []

    def app(port: int) -> list[str]:
        ports.append(port)
        return [str(NODE), str(APP_DIR / "app.mjs"), str(port)]

    workdir = tmp_path_factory.mktemp("ts")
    with official_servers(app, workdir, prefix="ts", app_id="ts-app") as base:
        servers = Servers(base.url, base.sender, base.prefix, base.app_id)
        servers.app_port = ports[0]
        yield servers


def finished(servers: Servers, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return servers.finished_run(servers.send(name, data), timeout=30)


@pytest.mark.slow
def test_steps_retries_sleeps_and_parallel_steps_complete(servers: Servers) -> None:
    run = finished(servers, "ts/steps", {"n": 4})
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "a": 5,
        "b": 10,
        "c": "10!",
        "flaky": 2,
        "parallel": [40, 80, 120],
        "after": 240,
    }
    # 8 steps, a failed attempt and a sleep. Without checkpoints: a call for each of a, b,
    # c, flaky (twice), the sleep, the plan, p1-p3, after and the end (12). With them, a,
    # b and c are recorded during the first call, and after during the last.
    calls = servers.calls(run["run_id"])
    assert calls <= 8, calls


@pytest.mark.slow
def test_a_hundred_sequential_steps_take_a_few_calls(servers: Servers) -> None:
    run = finished(servers, "ts/sequence", {"count": 100})
    assert run["status"] == "Completed", run
    assert run["output"] == {"total": sum(range(100))}
    calls = servers.calls(run["run_id"])
    assert calls < 10, calls
