"""Every ```python block of the guides in docs/ listed here runs as written, each on its
own, in a temporary directory (the README's snippets have tests/unit/test_readme_snippets)."""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.unit.test_readme_snippets import snippets

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
PAGES = ["middleware.md", "serializers.md"]
CASES = [
    (page, line, code)
    for page in PAGES
    for line, code, needs_server in snippets((DOCS / page).read_text())
    if not needs_server
]


def test_each_guide_has_snippets() -> None:
    for page in PAGES:
        assert any(case[0] == page for case in CASES), page


@pytest.mark.parametrize(("page", "line", "code"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_a_guide_snippet_runs_as_written(
    page: str, line: int, code: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("INNGEST_", "MAINSPRING_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/{page}:{line}", "exec"), {"__name__": "__main__"})
