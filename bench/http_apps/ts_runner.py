"""The benchmark functions on the official TypeScript SDK (``bench/http_apps/ts_app``, system
``inngest-ts-http``): install its locked npm dependencies and run it on Node in a subprocess.

The app gets the environment the Python apps get (``INNGEST_DEV=1``, ``INNGEST_BASE_URL``
the server, nothing else ``INNGEST_``/``MAINSPRING_`` inherited), serves ``/api/inngest``
on ``127.0.0.1:<port>`` and registers itself when pinged with a ``PUT`` (as
``HttpApp.sync`` does). The SDK checkpoints by default: its steps go to the server's
``POST /v1/checkpoint/{run}/async`` during a call instead of a call each.

Use::

    with TsApp(workdir, server_port=..., app_port=...) as app:
        app.pid, app.app_url, app.output()
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from bench.subprocess_app import ManagedProcess

APP_DIR: Final = Path(__file__).resolve().parent / "ts_app"
SYSTEM: Final = "inngest-ts-http"
APP_ID: Final = "bench-ts"
SERVE_PATH: Final = "/api/inngest"
START_TIMEOUT_S: Final = 60.0
#: The SDK's own floor (its package.json's engines).
NODE_MAJOR: Final = 20


def node() -> str:
    """Node's path, or a RuntimeError saying what is missing."""
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        raise RuntimeError(
            f"{SYSTEM} needs node {NODE_MAJOR}+ and npm (apt-get install nodejs npm)"
        )
    version = subprocess.run(
        [found, "-p", "process.versions.node"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.split(".")[0]) < NODE_MAJOR:
        raise RuntimeError(f"{SYSTEM} needs node {NODE_MAJOR}+, found {version}")
    return found


def install() -> None:
    """``npm ci`` the app's locked dependencies unless they are there (git ignores them)."""
    if (APP_DIR / "node_modules" / "inngest" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"{SYSTEM} needs npm (apt-get install npm)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=APP_DIR,
        check=True,
        timeout=600,
    )


def app_env(server_url: str) -> dict[str, str]:
    """The Python apps' environment: pointed at ``server_url`` and nowhere else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "MAINSPRING_"))}
    return {**env, "INNGEST_DEV": "1", "INNGEST_BASE_URL": server_url}


class TsApp(ManagedProcess):
    """The TypeScript app on ``app_port``, registering to the server on ``server_port``.

    ``env`` replaces :func:`app_env` (the bench may pass its ``child_env(...)``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        server_port: int,
        app_port: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.server_url = f"http://127.0.0.1:{server_port}"
        self.app_port = app_port
        self.app_url = f"http://127.0.0.1:{app_port}{SERVE_PATH}"
        # The command waits for __enter__: finding node may fail, and only starting should.
        super().__init__(
            f"the {SYSTEM} app",
            [],
            cwd=APP_DIR,
            env=env if env is not None else app_env(self.server_url),
            log_path=workdir / f"{SYSTEM}-app.log",
        )

    def __enter__(self) -> TsApp:
        self.argv = [node(), str(APP_DIR / "app.mjs"), str(self.app_port)]
        install()
        self.launch(self.app_url, START_TIMEOUT_S)
        return self
