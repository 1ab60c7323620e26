"""Ten 100 MB posts at once do not grow ``mainspring dev``: every body is refused at its
cap (from ``Content-Length`` before reading, or while streaming a chunked body), and
``/health`` keeps answering fast meanwhile.

What the client sees: the server answers ``413`` with ``Connection: close`` as soon as it
knows the body is too large, then closes the connection without reading the rest. The
client here notices the answer before sending its next chunk and stops; a send that races
the close fails with a reset, after which the ``413`` already received is still read.
"""

from __future__ import annotations

import contextlib
import pathlib
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.support import ROOT, free_port, stop, wait_until_up

MIB = 2**20
TOTAL = 100 * MIB
CHUNK = b" " * MIB  # one shared chunk: the test holds 1 MiB, not 1 GB
CLIENTS = 10


def rss_bytes(pid: int) -> int:
    """The resident set size of ``pid``, from ``/proc/<pid>/status``."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // len(CHUNK)):
        yield CHUNK


@contextlib.contextmanager
def dev_server(tmp_path: pathlib.Path, http: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = ["dev", "--port", str(port), "--db", str(tmp_path / "dev.db"), "--http", http]
    proc = subprocess.Popen([sys.executable, "-m", "mainspring.cli", *command], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        yield url, proc
    finally:
        stop(proc)


def post_big(port: int, *, declared: bool, total: int = TOTAL) -> tuple[int | None, int]:
    """POST ``total`` bytes to ``/e/key`` over a raw socket, with ``Content-Length`` or
    chunked; stops sending once an answer is readable. (status or None, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with sock:
        framing = f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked"
        head = f"POST /e/key HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n"
        sock.sendall(head.encode())
        sent = 0
        try:
            for chunk in chunks(total):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                if declared:
                    sock.sendall(chunk)
                else:
                    sock.sendall(b"%x\r\n" % len(chunk))
                    sock.sendall(chunk)
                    sock.sendall(b"\r\n")
                sent += len(chunk)
            else:
                if not declared:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed after answering: read what it said
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return None, sent
    return int(answer.split(b" ", 2)[1]), sent


@pytest.mark.slow
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_ten_concurrent_100_mb_posts_do_not_grow_the_server(
    tmp_path: pathlib.Path, http: str
) -> None:
    with dev_server(tmp_path, http) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        # Warm up every path the barrage takes, so the baseline includes its code.
        for _ in range(3):
            assert httpx.post(f"{url}/e/key", json={"name": "warm"}).status_code == 200
        assert httpx.get(f"{url}/v1/events").status_code == 200
        assert post_big(port, declared=True, total=8 * MIB)[0] == 413
        assert post_big(port, declared=False, total=8 * MIB)[0] == 413
        time.sleep(0.5)
        baseline = rss_bytes(proc.pid)

        results: list[tuple[int | None, int] | None] = [None] * CLIENTS

        def client(index: int) -> None:
            results[index] = post_big(port, declared=index % 2 == 0)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        peak, slowest = baseline, 0.0
        with httpx.Client(timeout=5) as probe:
            while any(thread.is_alive() for thread in threads):
                started = time.monotonic()
                assert probe.get(f"{url}/health").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                peak = max(peak, rss_bytes(proc.pid))
                time.sleep(0.05)
        for thread in threads:
            thread.join(30)
        time.sleep(0.5)
        after = rss_bytes(proc.pid)
        assert proc.poll() is None, "the server died"

    assert [r[0] if r else None for r in results] == [413] * CLIENTS, results
    # The server stopped reading early: nobody got to send more than a few caps' worth.
    assert all(r is not None and r[1] <= 32 * MIB for r in results), results
    assert slowest < 1.0, f"/health took {slowest:.2f}s during the barrage"
    assert peak - baseline < 50 * MIB, f"RSS grew {(peak - baseline) / MIB:.0f} MiB at peak"
    assert after - baseline < 50 * MIB, f"RSS still {(after - baseline) / MIB:.0f} MiB up after"
