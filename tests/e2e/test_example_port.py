"""``scripts/example`` stops at once when its port is taken, rather than starting a server
that cannot bind and then sending the example's events to whatever listens there."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.e2e.support import ROOT


@pytest.mark.slow
def test_example_stops_when_its_port_is_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "example")],
            env={**os.environ, "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    assert f"port {port} is in use (set PORT=... to use another)" in done.stderr
    assert done.stdout == ""  # nothing was installed, started or sent
    assert time.monotonic() - started < 5
