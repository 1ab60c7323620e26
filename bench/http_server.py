"""The Mainspring server of the HTTP bench: ``mainspring dev`` in a process of its own.

One process per workload, on a fresh SQLite file, so every workload starts from an empty
database, as the embedded suite does. It is the server as shipped (``python -m
mainspring.cli dev``: uvloop and httptools where installed, the engine's defaults,
``--durability normal``), with ``--no-poll``: the bench asks the app to sync itself, once,
and nothing then asks it again while the clock runs; and with ``--log-level warning``: no
line per run, as a server whose runs are watched on its dashboard would run. It always
binds the same port, which the app found in its environment. Its output goes to a log file
in the work directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

import mainspring
from bench.subprocess_app import ManagedProcess, NeverAnswered

ROOT: Final = Path(__file__).resolve().parent.parent
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the bench starts: nothing inherited that could point
    either SDK or the server elsewhere (an API URL, a signing key, a database URL), and the
    very ``mainspring`` this process uses (installed, or src/ as run.py falls back to) and
    ``bench`` from the repository root on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "MAINSPRING_"))}
    paths = [str(ROOT), str(Path(mainspring.__file__).resolve().parent.parent)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return {**env, **(extra or {})}


class ServerProcess(ManagedProcess):
    """``mainspring dev`` on ``database`` at 127.0.0.1:``port``, from start to stop."""

    def __init__(self, database: Path, port: int, log_path: Path) -> None:
        self.database = database
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(
            "the server", self.command(), cwd=database.parent, env=child_env(), log_path=log_path
        )

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mainspring.cli",
            "dev",
            "--no-poll",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database",
            str(self.database),
            "--durability",
            "normal",
            "--log-level",
            "warning",
        ]

    def __enter__(self) -> ServerProcess:
        if self.database.exists():
            raise FileExistsError(f"{self.database} exists; each workload needs a fresh database")
        try:
            self.launch(f"{self.url}/health", START_TIMEOUT_S)
        except NeverAnswered:
            # The log says why it never bound: a port in use, a migration that failed.
            raise RuntimeError(
                f"the server never answered on {self.url}: {self.output()}"
            ) from None
        return self

    def ready(self, status: int) -> bool:
        return status == 200  # /health answers 200 once the engine is open

    def check_alive(self) -> None:
        if self.exited():
            raise RuntimeError(f"the server exited with status {self.returncode}: {self.output()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (uvicorn then stops the engine), SIGKILL if it takes too long."""
        super().stop(timeout)
