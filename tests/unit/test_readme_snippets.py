"""Every ```python block of README.md runs as written: each on its own (a namespace of its
own, no names from another block), in a temporary directory (a snippet's ``runs.db``
lands there), with no INNGEST_/MAINSPRING_ variables set.

A block that cannot run on its own may be marked ``<!-- snippet: needs-server -->`` on
the line before it; it is then only compiled. None is marked today: keep it so (the
embedded engine runs anything a snippet shows)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
NEEDS_SERVER = "<!-- snippet: needs-server -->"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets(text: str, mark: str = NEEDS_SERVER) -> list[tuple[int, str, bool]]:
    """``(line, code, marked)`` of each python block of ``text``: marked when the line
    before it is ``mark``."""
    found = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1), before.strip() == mark))
    return found


SNIPPETS = snippets(README.read_text())


def test_the_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 4
    assert snippets("x\n<!-- snippet: needs-server -->\n```python\nprint(1)\n```\n") == [
        (3, "print(1)\n", True)
    ]


@pytest.mark.parametrize(
    ("line", "code", "needs_server"), SNIPPETS, ids=[f"line-{s[0]}" for s in SNIPPETS]
)
def test_a_readme_snippet_runs_as_written(
    line: int,
    code: str,
    needs_server: bool,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    compiled = compile(code, f"README.md:{line}", "exec")
    # Names a snippet uses but never defines fail only when the code reaching them runs,
    # which a snippet that defines a function may never do: ruff's F821 finds them.
    script = tmp_path / "snippet.py"
    script.write_text(code)
    ruff = pathlib.Path(sys.executable).with_name("ruff")
    if ruff.exists():
        found = subprocess.run(
            [
                str(ruff),
                "check",
                "--no-cache",
                "--isolated",
                "--select",
                "F821,F401,F811",
                str(script),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert found.returncode == 0, f"README.md line {line}:\n{found.stdout}"
    if needs_server:
        return
    for name in list(os.environ):
        if name.startswith(("INNGEST_", "MAINSPRING_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__main__"})  # the README's own code
    if "print(" in code:
        assert capsys.readouterr().out.strip(), f"README.md line {line} printed nothing"


def test_the_embedded_engine_snippet_prints_what_its_comment_says(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [(line, code, _)] = [s for s in SNIPPETS if "inngest.Engine(" in s[1]]
    said = re.search(r"print\(.*\)  # (.*)$", code, re.MULTILINE)
    assert said is not None, f"README.md line {line}: no comment on what it prints"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip() == said.group(1)
