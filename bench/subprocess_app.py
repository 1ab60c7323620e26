"""A process the HTTP bench starts and stops: the server, or an app it calls.

Its stdout and stderr go to a log file, whose end explains a failure; it is up once its URL
answers; it is stopped with SIGTERM, then SIGKILL if it lingers. ``ServerProcess``
(bench/http_server.py) and ``TsApp`` (bench/http_apps/ts_runner.py) are subclasses;
``HttpApp`` (bench/http_workloads.py) runs its uvicorn app in one.

Use::

    process = ManagedProcess("the app", argv, cwd=root, env=env, log_path=log)
    process.launch(url, timeout=60.0)  # stopped again if it never answers
    ...
    process.stop()
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import httpx

STOP_TIMEOUT_S: Final = 10.0
POLL_INTERVAL_S: Final = 0.05


def tail(path: Path, chars: int = 2000) -> str:
    """The end of a log, to explain a failure."""
    try:
        return path.read_text(errors="replace")[-chars:].strip() or "(no output)"
    except OSError:
        return "(no output)"


class ManagedProcess:
    """``argv`` in ``cwd`` with ``env``, logging to ``log_path``; ``name`` ("the server")
    begins its messages. A subclass says what "up" means (:meth:`ready`) and enters itself
    (``with`` stops it)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited; None while it runs or before it starts."""
        return None if self._proc is None else self._proc.poll()

    def exited(self) -> bool:
        """Whether it was started and has since exited."""
        return self.returncode is not None

    def output(self, chars: int = 2000) -> str:
        """The end of its stdout and stderr, to explain a failure."""
        return tail(self.log_path, chars)

    def check_alive(self) -> None:
        """Raise if it has exited (a subclass may word it its own way)."""
        if self.exited():
            raise RuntimeError(f"{self.name} exited with {self.returncode}: {self.output()}")

    def ready(self, status: int) -> bool:
        """Whether an answer of ``status`` means it is up: any but a server error, as an
        SDK's serve path may refuse a bare ``GET`` with a 4xx yet be listening."""
        return status < 500

    def start(self) -> None:
        # No stdin: a child that read the bench's terminal would stall the run.
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_until_up(self, url: str, timeout: float) -> None:
        """Until ``GET url`` answers as :meth:`ready` wants; :meth:`check_alive` first each
        time, as polling a dead process would only end in a timeout that hides why."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if self.ready(httpx.get(url, timeout=1.0).status_code):
                    return
            time.sleep(POLL_INTERVAL_S)
        raise NeverAnswered(f"{self.name} never answered on {url}")

    def launch(self, url: str, timeout: float) -> None:
        """:meth:`start`, then :meth:`wait_until_up`; a process that never comes up is
        stopped, so a failed start leaves nothing behind."""
        self.start()
        try:
            self.wait_until_up(url, timeout)
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, so it can shut down cleanly (the server stops its engine); SIGKILL if it
        is still there after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
            return
        proc.kill()
        proc.wait(timeout=timeout)


class NeverAnswered(RuntimeError):
    """The process ran but its URL did not answer in time."""
