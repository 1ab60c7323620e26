"""Raw HTTP on one kept-alive connection per live server: requests written as bytes (lies
about their length, bad framing and all), answers read and judged.

:func:`attack` is the verdict of one such request: never a 5xx, in time, a 4xx from the
app naming its problem as JSON, and the connection still serving afterwards.
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import select
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import orjson

from tests.fuzz.harness import ANSWER_WITHIN, SENT, Server

# -- raw HTTP on one kept-alive connection -------------------------------------------------


@dataclasses.dataclass
class Answer:
    """One answer read off a raw connection."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: The server said it closes the connection after this answer.
    closes: bool
    took: float

    @property
    def from_app(self) -> bool:
        """Answered by the app (not by uvicorn refusing the HTTP itself)."""
        return "x-inngest-server-kind" in self.headers

    def json(self) -> Any:
        return orjson.loads(self.body)

    def __str__(self) -> str:
        shown = self.body[:300].decode("utf-8", "replace")
        return f"{self.status} {shown!r}"


def request_bytes(
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    content_length: int | None = None,
) -> bytes:
    """An HTTP/1.1 request as bytes: ``target`` is sent as given (it must be ASCII, so
    percent-encode the rest); ``Content-Length`` is the body's unless ``content_length``
    says otherwise (a lie) or a ``transfer-encoding`` header is given."""
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
    given = {name.lower(): value for name, value in (headers or {}).items()}
    lines += [f"{name}: {value}" for name, value in given.items()]
    if body is not None and "transfer-encoding" not in given and "content-length" not in given:
        length = len(body) if content_length is None else content_length
        lines.append(f"content-length: {length}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


#: A connection left idle this long (seconds) is replaced before it is used again: the
#: server may have closed it (its keep-alive timeout), which is no fault of its answers.
IDLE_RECONNECT: Final = 60.0
#: A request head (request line and headers) this long may be refused by the HTTP server
#: itself, before the app (llhttp stops at 80 KiB): a 400 that closes the connection.
LONGEST_HEAD: Final = 64 * 1024


class Wire:
    """One kept-alive connection to a live server, written and read as raw bytes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.used = 0.0

    def _connected(self) -> socket.socket:
        if self.sock is not None and time.monotonic() - self.used > IDLE_RECONNECT:
            self.close()
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_WITHIN)
        self.used = time.monotonic()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, raw: bytes, *, method: str = "GET") -> Answer:
        """Send ``raw`` and read one answer (within :data:`ANSWER_WITHIN` seconds).

        The request goes out in pieces. An answer may come before the body is all sent (a
        refusal before reading it): the rest is still sent, as the server will read it
        before the next request, unless that answer closes the connection (413), when
        writing on would only meet a reset connection."""
        sock = self._connected()
        started = time.monotonic()
        try:
            for offset in range(0, len(raw), 65536):
                if offset and select.select([sock], [], [], 0)[0]:
                    early = sock.recv(65536, socket.MSG_PEEK).lower()
                    if not early or b"\r\nconnection: close\r\n" in early:
                        break  # answered, and the connection ends there
                try:
                    sock.sendall(raw[offset : offset + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break  # answered and closed: the answer may still be read
            answer = http.client.HTTPResponse(sock, method=method)
            try:
                answer.begin()
                body = answer.read()
            finally:
                answer.close()
        except BaseException:
            self.close()  # the next request starts on a new connection
            raise
        self.used = time.monotonic()
        headers = {name.lower(): value for name, value in answer.getheaders()}
        return Answer(
            answer.status, headers, body, bool(answer.will_close), time.monotonic() - started
        )

    def still_usable(self, auth: Mapping[str, str]) -> None:
        """A ``GET /health`` on this same connection is answered: it was not dropped."""
        SENT["probe"] += 1
        try:
            answer = self.exchange(request_bytes("GET", "/health", headers=auth))
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise AssertionError(f"the connection was dropped: {exc!r}") from exc
        assert answer.status == 200, answer


_wires: dict[int, Wire] = {}


def wire(port: int) -> Wire:
    """The kept-alive raw connection of the server on ``port``."""
    return _wires.setdefault(port, Wire(port))


def close_wires() -> None:
    for connection in _wires.values():
        connection.close()
    _wires.clear()


def problem_named(answer: Answer) -> str:
    """The problem a 4xx of the app names (asserting it names one): in the JSON body of an
    API route, or in the text of a dashboard page (HTML, for a person to read)."""
    if answer.headers.get("content-type", "").startswith("text/html"):
        text = re.sub(r"<[^>]*>", " ", answer.body.decode("utf-8", "replace"))
        assert text.strip(), f"a {answer.status} page says nothing: {answer}"
        return " ".join(text.split())
    body = answer.json()
    assert isinstance(body, dict), f"a {answer.status} body is not a JSON object: {answer}"
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return error
    errors = body.get("errors")
    assert isinstance(errors, list), f"a {answer.status} names no problem: {answer}"
    messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
    assert messages, f"a {answer.status} names no problem: {answer}"
    assert all(m.strip() for m in messages), answer
    return messages[0]


def attack(
    server: Server,
    raw: bytes,
    *,
    method: str,
    expect: set[int] | frozenset[int],
    may_close: bool = False,
) -> Answer:
    """Send ``raw`` to ``server`` on its kept-alive connection; the answer must be one of
    ``expect`` (never a 5xx), in time; a 4xx from the app is JSON naming the problem; and
    the connection must still serve a request after it, unless the server said it closes
    it, which only a 413 (a body left unread) or, with ``may_close`` or a head over
    :data:`LONGEST_HEAD`, a refusal of the HTTP itself may do."""
    assert server.port is not None
    connection = wire(server.port)
    SENT["fuzz"] += 1
    answer = connection.exchange(raw, method=method)
    may_close = may_close or len(raw.partition(b"\r\n\r\n")[0]) > LONGEST_HEAD
    try:
        _judge(server, connection, raw, answer, method=method, expect=expect, may_close=may_close)
    except BaseException:
        connection.close()  # a failing example leaves no state behind for the next one
        raise
    return answer


def _judge(
    server: Server,
    connection: Wire,
    raw: bytes,
    answer: Answer,
    *,
    method: str,
    expect: set[int] | frozenset[int],
    may_close: bool,
) -> None:
    assert answer.status < 500, answer
    assert answer.took < ANSWER_WITHIN, f"{answer.took:.1f} s for {answer}"
    target = urllib.parse.unquote(raw.split(b" ", 2)[1].partition(b"?")[0].decode("latin-1"))
    if answer.status == 307 and target.endswith("/"):
        # Starlette's redirect of a path ending in '/' (an id holding '/' too) to the path
        # without it: its one answer that is not JSON marked with the server's kind.
        location = urllib.parse.unquote(answer.headers["location"])
        assert location.endswith(target.rstrip("/")), answer
    elif answer.status == 303 and 303 in expect:
        # A dashboard redirect: to a page of the same server, never elsewhere.
        assert answer.from_app, answer
        location = answer.headers["location"]
        assert location.startswith("/"), answer
        assert not location.startswith("//"), answer
    elif answer.status not in expect:
        raise AssertionError(f"unexpected {answer}")
    elif answer.from_app and 400 <= answer.status < 500 and method != "HEAD":
        problem_named(answer)
    else:
        assert answer.from_app or may_close, f"not answered by the app: {answer}"
    if answer.closes:
        assert answer.status == 413 or may_close, f"a {answer.status} closed the connection"
        connection.close()
    else:
        connection.still_usable(server.auth)
