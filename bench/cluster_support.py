"""What the cluster benchmarks share: a scratch PostgreSQL database, and ``mainspring dev``
servers on it in subprocesses."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``: yields its URL, drops it after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield url
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def start_server(functions: str, url: str, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """``mainspring dev FUNCTIONS --database URL`` on a free port, once it answers."""
    port = free_port()
    command = ["dev", functions, "--database", url, "--port", str(port), "--no-poll", *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mainspring.cli", *command],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).is_success:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"a server on {base} never came up")


def stop_servers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (a drain), then wait for each."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)
