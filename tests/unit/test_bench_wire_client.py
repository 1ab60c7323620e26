"""bench/wire_client.py against a scripted server on loopback: it frames answers by length,
by chunks and by the connection's end, keeps connections for the next request, and does not
reuse one the server has closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from bench.wire_client import Answer, WireClient, WireError, parse_head

Script = Callable[[bytes], bytes | None]  # a request's bytes -> the answer (None: hang up)


class Scripted:
    """A server that reads whole requests (head and content-length body) and answers each
    as the script says, counting connections and keeping the requests it saw."""

    def __init__(self, script: Script, close_after_answer: bool = False) -> None:
        self.script = script
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.hung_up = asyncio.Event()  # set each time the server closes a connection

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            self.hung_up.set()


@asynccontextmanager
async def serving(server: Scripted) -> AsyncIterator[WireClient]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with WireClient("127.0.0.1", port, timeout=10) as client:
            yield client
    finally:
        listener.close()
        await listener.wait_closed()


def sized(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status.encode(),
        len(body),
        extra,
        body,
    )


async def test_a_prepared_request_is_sent_as_encoded_and_connections_are_kept() -> None:
    server = Scripted(lambda request: sized(b'{"ok": true}'))
    async with serving(server) as client:
        request = client.prepare("POST", "/e/key", b'{"name": "x"}')
        for _ in range(3):
            answer = await client.send(request)
            assert answer == Answer(200, b'{"ok": true}')
            assert answer.json() == {"ok": True}
    assert server.connections == 1
    assert server.requests == [request] * 3
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == b'{"name": "x"}'
    assert head.split(b"\r\n")[0] == b"POST /e/key HTTP/1.1"
    assert b"content-length: 13" in head.split(b"\r\n")
    assert b"content-type: application/json" in head.split(b"\r\n")


async def test_requests_at_once_each_take_a_connection_then_share_them() -> None:
    server = Scripted(lambda request: sized(request.split(b" ")[1]))
    async with serving(server) as client:
        answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(5)))
        assert [a.text for a in answers] == [f"/{i}" for i in range(5)]
        opened = server.connections
        await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(5)))
    assert opened == 5
    assert server.connections == 5


async def test_a_chunked_answer_with_trailers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    server = Scripted(lambda request: chunked)
    async with serving(server) as client:
        assert (await client.request("GET", "/")).body == b"Wikipedia "
        assert (await client.request("GET", "/")).body == b"Wikipedia "
    assert server.connections == 1


async def test_connection_close_and_unframed_answers_open_a_new_connection() -> None:
    answers = iter(
        [
            sized(b"one", extra=b"connection: close\r\n"),
            b"HTTP/1.1 200 OK\r\n\r\nuntil the end",  # framed by the connection's end
            sized(b"three"),
        ]
    )
    server = Scripted(lambda request: next(answers), close_after_answer=True)
    async with serving(server) as client:
        assert (await client.request("GET", "/")).text == "one"
        assert (await client.request("GET", "/")).text == "until the end"
        assert (await client.request("GET", "/")).text == "three"
    assert server.connections == 3


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    server = Scripted(lambda request: sized(b"ok"), close_after_answer=True)
    async with serving(server) as client:
        assert (await client.request("GET", "/")).text == "ok"
        await server.hung_up.wait()
        await asyncio.sleep(0.05)  # the server's FIN reaches the idle connection
        assert (await client.request("GET", "/")).text == "ok"
    assert server.connections == 2


async def test_no_content_and_a_hang_up() -> None:
    answers = iter([b"HTTP/1.1 204 No Content\r\n\r\n", None])
    server = Scripted(lambda request: next(answers))
    async with serving(server) as client:
        assert await client.request("DELETE", "/x") == Answer(204, b"")
        with pytest.raises(WireError, match="closed the connection before answering"):
            await client.request("GET", "/")


@pytest.mark.parametrize(
    ("head", "status", "headers"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", 404, {"content-length": "3"}),
        (b"HTTP/1.0 200\r\nX-A:  b \r\n\r\n", 200, {"x-a": "b"}),
    ],
)
def test_heads_are_parsed(head: bytes, status: int, headers: dict[str, str]) -> None:
    assert parse_head(head) == (status, headers)


@pytest.mark.parametrize("head", [b"SPDY/3 200\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"\r\n\r\n"])
def test_a_bad_status_line_is_refused(head: bytes) -> None:
    with pytest.raises(WireError, match="status line"):
        parse_head(head)
