"""uvicorn with the server's protocol (server/one_write.py): answers arrive whole, and
streamed ones are not held back; on both of uvicorn's HTTP parsers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import pytest

from mainspring.server.one_write import one_write_protocol
from tests.e2e.support import on_uvicorn

#: Set by the test: the streamed answer's second chunk waits for it.
release = threading.Event()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.to_thread(release.wait, 10)
        await send({"type": "http.response.body", "body": b"second"})
        return
    if scope["path"] == "/late":
        # The head now, the body a while after: the head must not wait for it.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.to_thread(release.wait, 10)
        await send({"type": "http.response.body", "body": b"late"})
        return
    body = b'{"ok":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serving(http: str) -> contextlib.AbstractContextManager[int]:
    return on_uvicorn(app, http=one_write_protocol(http))


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    return data


PARSERS = ["h11", "httptools"]


@pytest.mark.parametrize("http", PARSERS)
def test_each_answer_on_a_kept_alive_connection_arrives_whole(http: str) -> None:
    with serving(http) as port, connect(port) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            # One send of head and body: the first recv holds the whole answer. (Two sends
            # split it only when this read wakes between them: tests/unit/test_one_write.py
            # pins the single write.)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert answer.endswith(b'\r\n\r\n{"ok":true}'), answer


@pytest.mark.parametrize("http", PARSERS)
def test_a_head_request_and_a_closing_request_are_answered_whole(http: str) -> None:
    with serving(http) as port:
        with connect(port) as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
            head = read_until(sock, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length: 11" in head.lower()
        with connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.endswith(b'{"ok":true}')
            assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("http", PARSERS)
def test_a_streamed_answer_is_not_held_back(http: str) -> None:
    release.clear()
    with serving(http) as port, connect(port) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        # The head and the first chunk arrive while the app still waits to send the rest.
        first = read_until(sock, b"first\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked" in first.lower()
        release.set()
        rest = read_until(sock, b"0\r\n\r\n")
        assert b"second" in rest


@pytest.mark.parametrize("http", PARSERS)
def test_a_head_whose_body_comes_later_goes_out_at_once(http: str) -> None:
    release.clear()
    with serving(http) as port, connect(port) as sock:
        sock.sendall(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n")
        head = read_until(sock, b"\r\n\r\n")  # before the app is let go
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        release.set()
        assert b"late" in read_until(sock, b"0\r\n\r\n")
