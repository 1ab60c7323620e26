"""The driver's HTTP client: HTTP/1.1 over kept-alive loopback connections, nothing more.

The HTTP bench times servers that answer a request in a few hundred microseconds of CPU, on
a machine whose cores the driver shares with them. A general client costs as much or more
per request than that (measured against `mainspring dev`, ``POST /e/`` of one event: httpx
~950 µs of client CPU, aiohttp ~250 µs, this ~75 µs, the server ~300 µs), so its cost would
be in every figure. This one writes requests encoded before the clock starts (`prepare`) and
reads an answer's status line, its framing headers and its body: no redirects, cookies,
compression or header objects. Each connection carries one request at a time (no
pipelining); requests in flight at once each take a connection of the pool, which keeps
them open for the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Final

import orjson

#: An answer's head (status line and headers) may be at most this long.
MAX_HEAD_BYTES: Final = 64 * 1024
JSON: Final = "application/json"
#: Seconds a request may take, from sending to the end of its answer.
DEFAULT_TIMEOUT_S: Final = 120.0


class WireError(Exception):
    """The server's answer could not be read (closed early, malformed framing)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """False once the server has closed it (an idle keep-alive timed out, say): the
        loop has then already seen the end of the stream."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class WireClient:
    """Requests to one ``host:port``; :meth:`prepare` encodes one, :meth:`send` sends it."""

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

    def prepare(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = JSON,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The request's bytes, to send as often as wanted (the same bytes each time)."""
        lines = [
            f"{method} {path} HTTP/1.1".encode(),
            b"host: " + self._host_header,
            f"content-length: {len(body)}".encode(),
        ]
        if body:
            lines.append(f"content-type: {content_type}".encode())
        lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def send(self, request: bytes) -> Answer:
        """Send a prepared request on an idle connection (or a new one); its answer."""
        connection = await self._connection()
        try:
            # asyncio.timeout, not wait_for: no task made per request.
            async with asyncio.timeout(self.timeout):
                connection.writer.write(request)
                answer, keep = await _read_answer(connection.reader)
        except BaseException:
            connection.close()
            raise
        if keep:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def request(
        self, method: str, path: str, body: bytes = b"", *, content_type: str = JSON
    ) -> Answer:
        return await self.send(self.prepare(method, path, body, content_type=content_type))

    async def open(self, count: int) -> None:
        """Have ``count`` connections open and idle, so that no timed request opens one."""
        while len(self._idle) < count:
            self._idle.append(await self._connect())

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return await self._connect()

    async def _connect(self) -> _Connection:
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES
            )
        return _Connection(reader, writer)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """One answer from ``reader``, and whether the connection may carry another request."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise WireError("the server closed the connection before answering") from exc
    except asyncio.LimitOverrunError as exc:
        raise WireError("the answer's head is too long") from exc
    status, headers = parse_head(head)
    if 100 <= status < 200:  # an interim answer (we never ask for one): the real one follows
        return await _read_answer(reader)
    keep = headers.get("connection", "").lower() != "close"
    try:
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:  # framed by the end of the connection
            body, keep = await reader.read(), False
    except asyncio.IncompleteReadError as exc:
        raise WireError("the server closed the connection in the middle of a body") from exc
    return Answer(status, body), keep


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names in lower case) of an answer's head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise WireError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise WireError(f"a malformed chunk size: {size_line[:40]!r}") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, until a blank line
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
