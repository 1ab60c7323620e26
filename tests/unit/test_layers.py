"""The package's layering, read from the source with ``ast`` (nothing is imported).

- ``mainspring.protocol`` is the wire contract: it depends on nothing else of ours and does
  no I/O.
- ``mainspring.sdk`` never reaches the engine, the server or the CLI: an SDK app talks to
  an executor only through protocol messages.
- The engine sits below the server and the CLI, and inside it
  ``store`` → ``queue`` → ``executor`` → ``engine`` only ever import downwards.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``, relative
ones, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name.
Dependencies are followed transitively through our own modules (``sdk.x`` importing
``errors`` importing ``engine`` is caught at ``sdk.x``), including the ``__init__`` of every
package on the way. The root ``mainspring/__init__.py`` is the exception: it is the public
facade and re-exports the engine, so it only counts where a module imports it by name
(``import mainspring`` or ``from mainspring import Engine``).
"""

from __future__ import annotations

import ast
import dataclasses
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import pytest

ROOT = "mainspring"
SRC = Path(__file__).resolve().parents[2] / "src"

#: Modules (top-level names) that do I/O or run event loops; the protocol uses none.
IO_MODULES = {
    "aiohttp",
    "asyncio",
    "asyncpg",
    "http",
    "httpx",
    "multiprocessing",
    "psycopg",
    "psycopg2",
    "requests",
    "select",
    "selectors",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "starlette",
    "subprocess",
    "threading",
    "urllib",
    "uvicorn",
}

#: The engine's inner layers, lowest first; a layer never imports one above it.
ENGINE_LAYERS = (
    "mainspring.engine.store",
    "mainspring.engine.queue",
    "mainspring.engine.executor",
    "mainspring.engine.engine",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Import:
    importer: str
    target: str
    line: int


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _resolve_relative(name: str | None, level: int, package: str) -> str:
    if level == 0:
        return name or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ImportError(f"relative import beyond the top of {package!r}")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{name}" if name else base


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def scan_imports(
    importer: str, source: str, *, is_package: bool, known: Collection[str]
) -> Iterator[Import]:
    """Every import in ``source``, resolved to absolute module names.

    ``from pkg import name`` imports the module ``pkg.name`` when ``known`` has it, and
    ``pkg`` otherwise (``name`` is then an attribute of ``pkg``).
    """
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(importer, submodule if submodule in known else base, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and _is_dynamic_import(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            name = node.args[0].value
            level = len(name) - len(name.lstrip("."))
            yield Import(importer, _resolve_relative(name[level:], level, package), node.lineno)


def _describe(chain: Sequence[Import]) -> str:
    return " -> ".join(f"{imp.importer}:{imp.line} imports {imp.target}" for imp in chain)


def _outside(*banned: str) -> Callable[[str], bool]:
    return lambda module: not any(_within(module, package) for package in banned)


class SourceTree:
    """The modules of one package under ``src`` and the imports each one makes."""

    def __init__(self, src: Path, root: str = ROOT) -> None:
        self.root = root
        self.modules: dict[str, Path] = {}
        for path in sorted((src / root).rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            self.modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        self.imports: dict[str, list[Import]] = {
            module: list(
                scan_imports(
                    module,
                    path.read_text(encoding="utf-8"),
                    is_package=path.name == "__init__.py",
                    known=self.modules,
                )
            )
            for module, path in self.modules.items()
        }

    def direct(self, *packages: str) -> Iterator[Import]:
        """The imports made by the modules of ``packages``."""
        for module, imports in self.imports.items():
            if any(_within(module, package) for package in packages):
                yield from imports

    def _own_module(self, target: str) -> str | None:
        """The module of ours that ``target`` names (or lies inside), if any."""
        while target:
            if target in self.modules:
                return target
            target = target.rpartition(".")[0]
        return None

    def _dependencies(self, module: str) -> dict[str, Import]:
        """Our modules that importing ``module`` runs directly, with the import that does."""
        found: dict[str, Import] = {}
        for imp in self.imports[module]:
            own = self._own_module(imp.target)
            if own is None:
                continue
            found.setdefault(own, imp)
            # Importing a.b.c runs the __init__ of a.b too; the root facade is left out.
            parent = own.rpartition(".")[0]
            while parent and parent != self.root:
                found.setdefault(parent, imp)
                parent = parent.rpartition(".")[0]
        return found

    def reachable(self, start: str) -> dict[str, list[Import]]:
        """Every module of ours that ``start`` reaches, with the chain of imports to it."""
        chains: dict[str, list[Import]] = {start: []}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            for dependency, imp in self._dependencies(current).items():
                if dependency not in chains:
                    chains[dependency] = [*chains[current], imp]
                    queue.append(dependency)
        del chains[start]
        return chains

    def violations(self, packages: Collection[str], allowed: Callable[[str], bool]) -> list[str]:
        """Modules of ``packages`` that reach a module of ours that ``allowed`` refuses."""
        found: list[str] = []
        for module in self.modules:
            if not any(_within(module, package) for package in packages):
                continue
            for reached, chain in self.reachable(module).items():
                if not allowed(reached):
                    found.append(f"{module} reaches {reached}: {_describe(chain)}")
        return found


@pytest.fixture(scope="module")
def tree() -> SourceTree:
    return SourceTree(SRC)


# -- the scanner -----------------------------------------------------------------------------


def test_source_tree_is_found_and_parses(tree: SourceTree) -> None:
    assert tree.modules, f"no modules under {SRC / ROOT}"
    for package in ("mainspring.protocol", "mainspring.sdk", "mainspring.engine"):
        assert package in tree.modules
        assert any(_within(m, package) and m != package for m in tree.modules), package
    assert any(tree.imports.values())


def test_scanner_sees_every_form_of_import() -> None:
    source = """
from __future__ import annotations
import json, mainspring.sdk.event as ev
from typing import TYPE_CHECKING
from . import opcodes
from .codes import ErrorCode
from .. import errors
from ..sdk import Client
if TYPE_CHECKING:
    from mainspring.engine.engine import Engine

def later() -> None:
    import mainspring.engine.queue
    from mainspring import Engine
    try:
        import sqlite3
    except ImportError:
        pass

class K:
    def method(self) -> None:
        importlib.import_module("mainspring.engine.clock")
        __import__("mainspring.engine.records")
        import_module(".step_ids", "mainspring.protocol")
"""
    known = {
        "mainspring",
        "mainspring.errors",
        "mainspring.protocol",
        "mainspring.protocol.opcodes",
        "mainspring.protocol.codes",
        "mainspring.protocol.step_ids",
        "mainspring.sdk",
        "mainspring.sdk.event",
    }
    found = {
        (imp.target, imp.line)
        for imp in scan_imports("mainspring.protocol.fake", source, is_package=False, known=known)
    }
    assert found == {
        ("__future__", 2),
        ("json", 3),
        ("mainspring.sdk.event", 3),
        ("typing", 4),
        ("mainspring.protocol.opcodes", 5),
        ("mainspring.protocol.codes", 6),
        ("mainspring.errors", 7),
        ("mainspring.sdk", 8),
        ("mainspring.engine.engine", 10),
        ("mainspring.engine.queue", 13),
        ("mainspring", 14),
        ("sqlite3", 16),
        ("mainspring.engine.clock", 22),
        ("mainspring.engine.records", 23),
        ("mainspring.protocol.step_ids", 24),
    }


def test_scanner_resolves_package_relative_imports() -> None:
    found = [
        imp.target
        for imp in scan_imports(
            "mainspring.sdk",
            "from .step import Step\nfrom . import group\n",
            is_package=True,
            known={"mainspring.sdk", "mainspring.sdk.step", "mainspring.sdk.group"},
        )
    ]
    assert found == ["mainspring.sdk.step", "mainspring.sdk.group"]


def test_reachability_follows_our_modules_transitively(tree: SourceTree) -> None:
    # A real chain: sdk.step imports protocol.expressions, which imports protocol.durations.
    reached = tree.reachable("mainspring.sdk.step")
    assert "mainspring.protocol.durations" in reached
    assert "mainspring.protocol" in reached  # the package __init__ on the way
    assert ROOT not in reached  # the facade only counts when imported by name


def test_rules_catch_an_indirect_and_a_lazy_import(tmp_path: Path) -> None:
    files = {
        "mainspring/__init__.py": "from mainspring.engine.core import Engine\n",
        "mainspring/errors.py": "def later():\n    from mainspring.engine import core\n",
        "mainspring/protocol/__init__.py": "",
        "mainspring/protocol/wire.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mainspring.sdk.api import Api\n",
        "mainspring/sdk/__init__.py": "",
        "mainspring/sdk/api.py": "from .. import errors\n",
        "mainspring/engine/__init__.py": "",
        "mainspring/engine/core.py": "import mainspring.sdk.api\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    fake = SourceTree(tmp_path)

    sdk = fake.violations(["mainspring.sdk"], _outside("mainspring.engine"))
    assert set(sdk) == {
        "mainspring.sdk.api reaches mainspring.engine: mainspring.sdk.api:1 imports "
        "mainspring.errors -> mainspring.errors:2 imports mainspring.engine.core",
        "mainspring.sdk.api reaches mainspring.engine.core: mainspring.sdk.api:1 imports "
        "mainspring.errors -> mainspring.errors:2 imports mainspring.engine.core",
    }
    protocol = fake.violations(["mainspring.protocol"], _outside("mainspring.sdk"))
    assert {line.split(":")[0] for line in protocol} == {
        "mainspring.protocol.wire reaches mainspring.sdk",
        "mainspring.protocol.wire reaches mainspring.sdk.api",
    }


# -- the rules -------------------------------------------------------------------------------


def test_protocol_depends_on_nothing_else_of_ours(tree: SourceTree) -> None:
    def inside(module: str) -> bool:
        return _within(module, "mainspring.protocol")

    assert tree.violations(["mainspring.protocol"], inside) == []


def test_protocol_does_no_io(tree: SourceTree) -> None:
    found = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in tree.direct("mainspring.protocol")
        if imp.target.split(".")[0] in IO_MODULES
    ]
    assert found == []


def test_sdk_never_reaches_engine_server_or_cli(tree: SourceTree) -> None:
    allowed = _outside("mainspring.engine", "mainspring.server", "mainspring.cli")
    assert tree.violations(["mainspring.sdk"], allowed) == []


def test_sdk_and_protocol_do_not_import_the_facade(tree: SourceTree) -> None:
    # ``mainspring/__init__.py`` re-exports the engine: importing it by name from below
    # would be a way round the rules above.
    found = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in tree.direct("mainspring.sdk", "mainspring.protocol")
        if imp.target == ROOT
    ]
    assert found == []


def test_engine_never_reaches_server_or_cli(tree: SourceTree) -> None:
    allowed = _outside("mainspring.server", "mainspring.cli")
    assert tree.violations(["mainspring.engine"], allowed) == []


@pytest.mark.parametrize("position", range(len(ENGINE_LAYERS) - 1))
def test_engine_layers_only_import_downwards(tree: SourceTree, position: int) -> None:
    layer, above = ENGINE_LAYERS[position], ENGINE_LAYERS[position + 1 :]
    assert tree.violations([layer], _outside(*above)) == []
