"""What starting the CLI and importing the package load, in a fresh interpreter each.

``mainspring --version``, ``--help`` and the client commands (``runs``, ``cancel``, ...) must
not import the engine, the server stack or the SDK's heavy dependencies: those took ~1.3 s
of every command's start when ``mainspring/__init__.py`` imported them eagerly. No timing
here (machines differ): the modules themselves are the measure, so an eager import that
comes back fails whatever the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import mainspring

#: Heavy third-party packages none of these paths needs.
HEAVY = (
    "aiohttp",
    "asyncio",
    "cel",
    "httpcore",
    "httpx",
    "jinja2",
    "orjson",
    "psycopg",
    "psycopg_pool",
    "pydantic",
    "sqlite3",
    "starlette",
    "strawberry",
    "uvicorn",
    "uvloop",
)
#: Our modules the CLI loads to build its parser: the keys' forms in ``start``'s help.
CLI_SERVER_MODULES = {"mainspring.server", "mainspring.server.keys"}


def loaded_after(code: str) -> set[str]:
    """The modules in ``sys.modules`` after ``code`` runs in a new interpreter."""
    script = textwrap.dedent(code) + (
        "\nimport json, sys\nsys.__stdout__.write('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    """The modules of ``modules`` that a light start must not have loaded."""

    def banned(name: str) -> bool:
        if name.partition(".")[0] in HEAVY or name.startswith("mainspring.engine"):
            return True
        if name.startswith("mainspring.server"):
            return name not in CLI_SERVER_MODULES
        if name.startswith("mainspring.sdk."):
            return name != "mainspring.sdk.settings"  # the dev server's event key
        return name == "mainspring.protocol.expressions"  # CEL

    return sorted(name for name in modules if banned(name))


def run_cli(*argv: str) -> str:
    return f"""
        import contextlib, io
        from mainspring.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main({list(argv)!r})
            except SystemExit:
                pass
    """


def test_importing_the_package_loads_nothing_else_of_ours() -> None:
    loaded = loaded_after("import mainspring")
    assert {name for name in loaded if name.startswith("mainspring.")} == set()
    assert heavy(loaded) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("--version",),
        ("--help",),
        ("runs", "--help"),
        ("cancel", "--help"),
        ("dev", "--help"),
        ("migrate", "--help"),
    ],
    ids=" ".join,
)
def test_version_and_help_load_neither_engine_nor_server(argv: tuple[str, ...]) -> None:
    loaded = loaded_after(run_cli(*argv))
    assert "mainspring.cli" in loaded
    assert heavy(loaded) == []
    # Not even the client: nothing is sent.
    assert "mainspring.cli.commands" not in loaded
    assert "http.client" not in loaded


@pytest.mark.parametrize(
    "argv",
    [
        ("runs",),
        ("send", "x/y"),
        ("cancel", "--function", "f", "--from", "1h"),
        ("rerun", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAW"),
    ],
    ids=" ".join,
)
def test_client_commands_load_neither_engine_nor_server(argv: tuple[str, ...]) -> None:
    # Port 1: nobody answers, the command fails after importing all it needs to send.
    loaded = loaded_after(run_cli("--url", "http://127.0.0.1:1", *argv))
    assert "mainspring.cli.commands" in loaded
    assert "mainspring.cli.client" in loaded
    assert heavy(loaded) == []


def test_an_sdk_app_never_loads_the_engine_or_the_server() -> None:
    loaded = loaded_after(
        """
        import mainspring as inngest
        client = inngest.Inngest(app_id="app")

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
        async def f(ctx: inngest.Context) -> None:
            await ctx.step.run("s", lambda: None)
        """
    )
    assert "mainspring.sdk.client" in loaded
    assert (
        sorted(
            name for name in loaded if name.startswith(("mainspring.engine", "mainspring.server"))
        )
        == []
    )
    assert not {"starlette", "uvicorn", "strawberry", "sqlite3"} & loaded
    # The CEL bindings (~130 ms: their package loads its shell) wait for an expression.
    assert "cel" not in loaded


def test_an_sdk_app_with_an_expression_loads_cel_when_it_defines_the_function() -> None:
    loaded = loaded_after(
        """
        import mainspring as inngest
        client = inngest.Inngest(app_id="app")

        @client.create_function(
            fn_id="f", trigger=inngest.TriggerEvent(event="e", expression="event.data.n > 1")
        )
        async def f(ctx: inngest.Context) -> None:
            pass
        """
    )
    assert "cel" in loaded


def test_a_fresh_interpreter_sees_every_public_name() -> None:
    # The names come on first use: each from the module it lives in, the same object.
    loaded = loaded_after(
        """
        import importlib
        import mainspring
        from mainspring import *  # noqa: F403
        from mainspring import Engine
        assert Engine is importlib.import_module("mainspring.engine.engine").Engine
        assert mainspring.Inngest is mainspring.Client
        for name in mainspring.__all__:
            assert name in dir(mainspring), name
            assert globals()[name] is getattr(mainspring, name), name
        # Subpackages stay reachable as attributes, as when the package imported them.
        assert mainspring.errors.StepError is mainspring.StepError
        assert mainspring.engine.records.RunStatus is mainspring.RunStatus
        try:
            mainspring.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("an unknown name resolved")
        """
    )
    assert "mainspring.engine.engine" in loaded


def test_the_lazy_names_are_the_curated_surface() -> None:
    # Every name of __all__ has a place to come from, and nothing else does.
    assert set(mainspring._WHERE) == set(mainspring.__all__)
