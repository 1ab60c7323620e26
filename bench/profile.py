"""Where a step's time goes: one run of sequential trivial steps under cProfile, its
self-time filed by phase (the package or module it was spent in).

    .venv/bin/python -m bench.profile                 # embedded engine, SQLite, durability "full"
    .venv/bin/python -m bench.profile --http          # our SDK over HTTP, in one process
    .venv/bin/python -m bench.profile --write         # both, into bench/README.md

``--http`` serves the app with the SDK's ASGI handler and has the engine call it through
an in-memory httpx transport (as the test suite's HTTP scenarios do): the wire encoding,
signing and the serve handler are all in, sockets and a second process are not (the
HTTP bench, ``run.py --http``, measures those). cProfile slows Python code several times
over and C code hardly at all, so the shares, not the milliseconds, are what to read:
they say where the next lever is.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import pathlib
import pstats
import tempfile
from collections import Counter
from typing import Any

import httpx

import mainspring
from bench.functions import define
from mainspring.sdk.serve.asgi import serve

STEPS = 200
README = pathlib.Path(__file__).with_name("README.md")
BEGIN = "<!-- profile: begin (python -m bench.profile --write) -->"
END = "<!-- profile: end -->"
SIGNING_KEY = "signkey-test-" + "ab" * 32

#: (phase, what a frame's file path contains), first match wins: more specific first.
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store (SQLite units, commits)", ("mainspring/engine/store/", "sqlite3")),
    ("SDK serve handler", ("mainspring/sdk/serve/",)),
    ("SDK replay core and steps", ("mainspring/sdk/",)),
    ("wire: JSON, signing, protocol", ("mainspring/protocol/", "orjson", "rfc8785", "hmac")),
    ("HTTP client and transport", ("httpx", "httpcore", "http_transport", "h11", "anyio")),
    ("engine: executor, queue, flow", ("mainspring/engine/",)),
    ("event loop (asyncio)", ("asyncio/", "selectors", "select.")),
)
OTHER = "other (stdlib, pydantic, ...)"


def phase_of(where: str) -> str:
    for phase, markers in PHASES:
        if any(marker in where for marker in markers):
            return phase
    return OTHER


@dataclasses.dataclass
class Profile:
    label: str
    steps: int
    seconds: Counter[str]

    def table(self) -> str:
        total = sum(self.seconds.values())
        lines = [
            f"{self.label}: {self.steps} sequential steps, "
            f"{total / self.steps * 1000:.3f} ms/step under cProfile",
            "",
            "| phase | share | ms/step (profiled) |",
            "|---|---|---|",
        ]
        for phase, spent in self.seconds.most_common():
            lines.append(f"| {phase} | {spent / total:.0%} | {spent / self.steps * 1000:.3f} |")
        return "\n".join(lines)


async def _one_run(engine: mainspring.Engine, steps: int) -> None:
    [event_id] = await engine.send(mainspring.Event(name="bench/seq", data={"n": steps}))
    [run] = await engine.runs(event_id)
    done = await engine.wait(run.id, timeout=120)
    if done.status is not mainspring.RunStatus.COMPLETED:
        raise RuntimeError(f"the profiled run ended {done.status}: {done.error}")


async def _profile(http: bool, steps: int, workdir: pathlib.Path) -> Profile:
    client = mainspring.Client(app_id="profile", is_production=False)
    functions = define(client)
    options: dict[str, Any] = {"database": workdir / f"profile-{http}.db", "durability": "full"}
    async with _HttpApp(client, functions, http) as extra:
        options.update(extra)
        async with mainspring.Engine(client, functions, **options) as engine:
            await _one_run(engine, steps)  # warm-up: imports, prepared statements
            profiler = cProfile.Profile()
            profiler.enable()
            await _one_run(engine, steps)
            profiler.disable()
    seconds: Counter[str] = Counter()
    collected: Any = pstats.Stats(profiler)  # its rows are an attribute typeshed leaves out
    rows: dict[tuple[str, int, str], tuple[Any, ...]] = collected.stats
    for (path, _line, name), row in rows.items():
        spent = row[2]  # tottime: spent in the frame itself
        callers: dict[tuple[str, int, str], tuple[Any, ...]] = row[4]
        if path == "~" and callers:
            # A C function (len, a dict method, Context.run): its time is its callers'
            # phase's, shared by how often each called it.
            calls = sum(caller[0] for caller in callers.values()) or 1
            for (caller_path, _, caller_name), caller in callers.items():
                share = spent * caller[0] / calls
                seconds[phase_of(f"{caller_path} {caller_name}")] += share
            continue
        seconds[phase_of(f"{path} {name}")] += spent
    label = "over HTTP (in process)" if http else "embedded"
    return Profile(label, steps, seconds)


class _HttpApp:
    """For ``--http``: the app behind the SDK's ASGI handler, reached in memory."""

    def __init__(
        self, client: mainspring.Client, functions: list[mainspring.Function[Any]], http: bool
    ) -> None:
        self._client = client
        self._functions = functions
        self._http = http
        self._session: httpx.AsyncClient | None = None

    async def __aenter__(self) -> dict[str, Any]:
        if not self._http:
            return {}
        self._client.settings = dataclasses.replace(
            self._client.settings, dev=False, signing_key=SIGNING_KEY
        )
        transport = httpx.ASGITransport(app=serve(self._client, self._functions))
        self._session = httpx.AsyncClient(transport=transport, base_url="http://app")
        return {
            "app_url": "http://app/api/inngest",
            "signing_key": SIGNING_KEY,
            "http": self._session,
        }

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.aclose()


def _write(tables: list[str]) -> None:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:start] + "\n\n" + "\n\n".join(tables) + "\n\n" + text[end:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", action="store_true", help="our SDK over HTTP (in process)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--write", action="store_true", help="both, into bench/README.md")
    args = parser.parse_args(argv)
    kinds = [False, True] if args.write else [args.http]
    with tempfile.TemporaryDirectory() as workdir:
        tables = [
            asyncio.run(_profile(http, args.steps, pathlib.Path(workdir))).table() for http in kinds
        ]
    for table in tables:
        print(table, end="\n\n")
    if args.write:
        _write(tables)


if __name__ == "__main__":
    main()
