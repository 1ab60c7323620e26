"""A response's head and its body leave in one write, not two.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, and the body at ``http.response.body``: two ``send`` calls, two
TCP segments, and a client that wakes for the head only to wait for the body. In a
profile of the HTTP bench's one-step runs, the head's send alone was about 8% of the
server's CPU; merging the two raised that workload's median from 991 to 1,155 runs/s
(some 110-120 rounds each, the servers alternated: `bench/README.md`).

:func:`one_write_protocol` wraps uvicorn's own protocol class (the one ``--http`` picks):
the only change is the transport it is given, which holds a write that ends an HTTP head
until the next write (the body, sent with it) or, at the latest, the loop's next turn
(a streamed answer whose first chunk comes later). Everything else is passed through.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

#: How a response's head ends; the first bytes say it is a head and not body data.
_HEAD_START = b"HTTP/"
_HEAD_END = b"\r\n\r\n"


class HeadWithBodyTransport(asyncio.Transport):
    """A transport that sends an HTTP head together with what is written next."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._head = b""
        self._flush_due = False

    # -- writes --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head:
            head, self._head = self._head, b""
            self._transport.write(head + data)  # the join copies: no bytes() first
            return
        if (
            data[: len(_HEAD_START)] == _HEAD_START
            and data[-len(_HEAD_END) :] == _HEAD_END
            and self._transport.get_write_buffer_size() == 0
        ):
            # Copied: a caller may reuse its buffer once write() returns.
            self._head = bytes(data)
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        """Send a head still held (its body was not written in the same turn)."""
        self._flush_due = False
        head, self._head = self._head, b""
        if head and not self._transport.is_closing():
            self._transport.write(head)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._head)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    # -- the connection ------------------------------------------------------------------

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = b""
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


def one_write_protocol(http: str) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class named by ``http`` ("auto", "h11", "httptools"), with
    each connection's transport a :class:`HeadWithBodyTransport`."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS[http])

    class OneWriteProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # Not an isinstance check: uvloop's transports do not derive from asyncio's.
            wrapped = HeadWithBodyTransport(
                cast(asyncio.Transport, transport), asyncio.get_running_loop()
            )
            super().connection_made(wrapped)

    OneWriteProtocol.__name__ = OneWriteProtocol.__qualname__ = f"OneWrite{base.__name__}"
    return OneWriteProtocol
