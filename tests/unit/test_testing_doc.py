"""Every ```python block of docs/testing.md runs as written, each on its own (a namespace of
its own), in a temporary directory, with no INNGEST_/MAINSPRING_ variables set.

A block marked ``<!-- snippet: pytest -->`` on the line before it is a test module: it is
run by pytest (in process, through ``pytester``) and its tests must pass."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.unit.test_readme_snippets import snippets as readme_snippets

pytest_plugins = ["pytester"]

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "testing.md"
PYTEST_MARK = "<!-- snippet: pytest -->"


def snippets(text: str) -> list[tuple[int, str, bool]]:
    """``(line, code, is_pytest_module)`` of each python block of ``text``."""
    return readme_snippets(text, PYTEST_MARK)


SNIPPETS = snippets(PAGE.read_text())


def test_the_page_has_its_snippets() -> None:
    assert len(SNIPPETS) >= 7
    assert [s for s in SNIPPETS if s[2]], "the pytest example is marked"
    assert snippets("x\n<!-- snippet: pytest -->\n```python\nprint(1)\n```\n") == [
        (3, "print(1)\n", True)
    ]


def _undefined_names(code: str, where: pathlib.Path, line: int) -> None:
    # Names a snippet uses but never defines fail only when the code reaching them runs:
    # ruff's F821 finds them (and unused or redefined imports, F401/F811).
    where.write_text(code)
    ruff = pathlib.Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        return
    found = subprocess.run(
        [str(ruff), "check", "--no-cache", "--isolated", "--select", "F821,F401,F811", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, f"docs/testing.md line {line}:\n{found.stdout}"


@pytest.mark.parametrize(
    ("line", "code", "is_pytest_module"), SNIPPETS, ids=[f"line-{s[0]}" for s in SNIPPETS]
)
def test_a_snippet_runs_as_written(
    line: int,
    code: str,
    is_pytest_module: bool,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    pytester: pytest.Pytester,
) -> None:
    _undefined_names(code, tmp_path / "snippet.py", line)
    for name in list(os.environ):
        if name.startswith(("INNGEST_", "MAINSPRING_")):
            monkeypatch.delenv(name)
    if is_pytest_module:
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        pytester.makepyfile(test_snippet=code)
        outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider")
        outcome.assert_outcomes(passed=code.count("\nasync def test_") + code.count("\ndef test_"))
        return
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/testing.md:{line}", "exec"), {"__name__": "__main__"})
