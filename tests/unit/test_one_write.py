"""The server's transport sends an HTTP head with the write after it (server/one_write.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mainspring.server.one_write import HeadWithBodyTransport, one_write_protocol

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    """The socket's transport: records each write (one write is one send)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.buffered = 0
        self.eof = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def wrap(recorder: Recorder) -> HeadWithBodyTransport:
    return HeadWithBodyTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    sent = Recorder()
    transport = wrap(sent)
    transport.write(HEAD)
    assert sent.writes == []
    transport.write(b"ok")
    assert sent.writes == [HEAD + b"ok"]
    await next_turn()  # the fallback flush finds nothing left
    assert sent.writes == [HEAD + b"ok"]


async def test_a_head_alone_goes_out_on_the_next_turn() -> None:
    # A streamed answer whose first chunk comes later must not keep its head back.
    sent = Recorder()
    transport = wrap(sent)
    transport.write(HEAD)
    await next_turn()
    assert sent.writes == [HEAD]
    transport.write(b"ok")
    assert sent.writes == [HEAD, b"ok"]


async def test_other_writes_pass_straight_through() -> None:
    sent = Recorder()
    transport = wrap(sent)
    for data in (b"body\r\n\r\n", b"5\r\nhello\r\n", b"HTTP/1.1 but not a head"):
        transport.write(data)
    assert sent.writes == [b"body\r\n\r\n", b"5\r\nhello\r\n", b"HTTP/1.1 but not a head"]


async def test_a_head_is_not_held_behind_a_backlog() -> None:
    # With bytes already queued the send is not immediate anyway: holding would only delay.
    sent = Recorder()
    sent.buffered = 10
    wrap(sent).write(HEAD)
    assert sent.writes == [HEAD]


async def test_a_held_head_is_a_copy_of_the_callers_buffer() -> None:
    sent = Recorder()
    transport = wrap(sent)
    buffer = bytearray(HEAD)
    transport.write(memoryview(buffer))
    buffer[:4] = b"XXXX"
    transport.write(b"ok")
    assert sent.writes == [HEAD + b"ok"]


@pytest.mark.parametrize(
    ("end", "sends_head", "flag"),
    [("close", True, "closed"), ("write_eof", True, "eof"), ("abort", False, "aborted")],
)
async def test_close_and_eof_send_a_held_head_first_and_abort_drops_it(
    end: str, sends_head: bool, flag: str
) -> None:
    sent = Recorder()
    transport = wrap(sent)
    transport.write(HEAD)
    getattr(transport, end)()
    await next_turn()
    assert sent.writes == ([HEAD] if sends_head else [])
    assert getattr(sent, flag)


async def test_a_head_held_on_a_connection_closed_meanwhile_is_dropped() -> None:
    sent = Recorder()
    transport = wrap(sent)
    transport.write(HEAD)
    sent.closed = True  # the peer went away: the transport closes under us
    await next_turn()
    assert sent.writes == []


async def test_the_buffer_size_counts_a_held_head_and_the_rest_is_passed_through() -> None:
    sent = Recorder()
    transport = wrap(sent)
    transport.write(HEAD)
    assert transport.get_write_buffer_size() == len(HEAD)
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5)
    assert transport.get_extra_info("nothing", 7) == 7


@pytest.mark.parametrize("http", ["auto", "h11", "httptools"])
def test_the_protocol_is_uvicorns_own_with_the_transport_wrapped(http: str) -> None:
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    protocol = one_write_protocol(http)
    base = import_from_string(HTTP_PROTOCOLS[http])
    assert issubclass(protocol, base)
    assert protocol.__name__ == f"OneWrite{base.__name__}"
