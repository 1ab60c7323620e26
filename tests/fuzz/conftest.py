"""Fixtures of the fuzz suite: seeded servers of both kinds, in process and on a socket,
started once per session; and the suite's closing summary (requests, 5xx, time).

Every test in this folder is marked ``fuzz`` (select it with ``-m fuzz``, or leave it out
with ``-m "not fuzz"``). ``MAINSPRING_FUZZ=long`` or ``MAINSPRING_FUZZ_EXAMPLES=N`` makes
it longer (see ``scripts/fuzz``).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from schemathesis.python import asgi as schemathesis_asgi

from tests.fuzz import harness, wire
from tests.fuzz.harness import SESSION, AsgiApi, Server, SocketApi, Tally

_HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in pathlib.Path(item.path).parents:
            item.add_marker(pytest.mark.fuzz)


class Servers:
    """Seeded servers, each started on first use and kept for the session."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.started = time.monotonic()
        self._asgi: dict[str, Server] = {}
        self._socket: dict[str, Server] = {}
        self._stops: list[Any] = []

    def _auth(self, kind: str) -> dict[str, str]:
        return {} if kind == "dev" else {"authorization": f"Bearer {harness.SIGNING_KEY}"}

    def asgi(self, kind: str) -> Server:
        """The server of ``kind``, in process: schemathesis's ASGI client runs its lifespan
        (the engine) and every request on one event loop of its own."""
        if kind not in self._asgi:
            tally = Tally()
            app, _ = harness.make_app(kind, self.directory / f"asgi-{kind}.db", tally)
            session = schemathesis_asgi.get_client(cast(Any, app))
            session.__enter__()
            api = AsgiApi(session, self._auth(kind))
            seeded = harness.seed(api, harness.EVENT_KEY)
            snapshot = harness.read_back(api, seeded)
            self._asgi[kind] = Server(kind, app, tally, seeded, snapshot, api)
        return self._asgi[kind]

    def socket(self, kind: str) -> Server:
        """The server of ``kind`` on uvicorn, on a loopback port."""
        if kind not in self._socket:
            tally = Tally()
            app, _ = harness.make_app(kind, self.directory / f"socket-{kind}.db", tally)
            running = harness.live(app)
            port = running.__enter__()
            self._stops.append(running)
            api = SocketApi(port, self._auth(kind))
            seeded = harness.seed(api, harness.EVENT_KEY)
            snapshot = harness.read_back(api, seeded)
            self._socket[kind] = Server(kind, app, tally, seeded, snapshot, api, port=port)
        return self._socket[kind]

    def close(self) -> None:
        """Read the seeded data back one last time, then stop every server."""
        changed: list[str] = []
        for where, kinds in (("asgi", self._asgi), ("socket", self._socket)):
            for kind, server in kinds.items():
                after = harness.read_back(server.api, server.seeded)
                _per_server.append((f"{where} {kind}", server.tally))
                SESSION.add(server.tally)
                changed += [
                    f"{where} {kind}: {change}"
                    for change in harness.differences(server.snapshot, after)
                ]
        wire.close_wires()
        if self._asgi:
            schemathesis_asgi.shutdown_lifespans()
        for running in reversed(self._stops):
            running.__exit__(None, None, None)
        assert not changed, "stored data changed during the session:\n" + "\n".join(changed)


_elapsed: list[float] = []
_per_server: list[tuple[str, Tally]] = []


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("fuzz"))
    try:
        yield started
    finally:
        started.close()
        _elapsed.append(time.monotonic() - started.started)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SESSION.requests:
        return
    took = sum(_elapsed)
    sent = harness.SENT
    terminalreporter.write_sep("-", "fuzz summary")
    terminalreporter.write_line(
        f"fuzz: {SESSION.summary()}; {took:.1f} s with servers up; "
        f"{harness.examples()} examples per unit"
    )
    terminalreporter.write_line(
        f"fuzz: sent: {sent['fuzz']} generated, {sent['probe']} connection probes, "
        f"{sent['read-back']} seeding and reading back (the HTTP server itself refuses some "
        "malformed requests: they never reach the app)"
    )
    for name, tally in _per_server:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
        terminalreporter.write_line(f"fuzz: {name}: {tally.requests} requests ({statuses})")
    for error in SESSION.server_errors[:20]:
        terminalreporter.write_line(f"fuzz: server error: {error}")
