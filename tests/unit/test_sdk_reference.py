"""docs/sdk-reference.md names every public name of ``mainspring`` and every public method
of the client and of the step and group APIs, each with its signature's parameters."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest

import mainspring

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "sdk-reference.md"
TEXT = PAGE.read_text()
#: Classes whose every public method the page lists with its parameters.
DETAILED = [
    mainspring.Client,
    mainspring.Step,
    mainspring.StepSync,
    mainspring.Group,
    mainspring.GroupSync,
]


def _section(name: str) -> str:
    """The page's text from ``### `name``` to the next heading."""
    found = re.search(rf"^### `{re.escape(name)}`\n(.*?)(?=^##)", TEXT + "\n##", re.S | re.M)
    assert found is not None, f"docs/sdk-reference.md has no section for {name}"
    return found.group(1)


@pytest.mark.parametrize("name", mainspring.__all__)
def test_every_public_name_has_a_section(name: str) -> None:
    section = _section(name)
    assert len(section.strip()) > 20, f"{name}: say what it is"


@pytest.mark.parametrize("cls", DETAILED, ids=lambda c: c.__name__)
def test_every_method_is_listed_with_its_parameters(cls: type) -> None:
    section = _section(cls.__name__)
    for method, value in vars(cls).items():
        if method.startswith("_") or not inspect.isfunction(value):
            continue
        written = re.search(rf"`(?:async )?{method}\((.*?)\)", section)
        assert written is not None, f"{cls.__name__}.{method} is not on the page"
        for parameter in list(inspect.signature(value).parameters)[1:]:
            assert parameter in written.group(1), f"{cls.__name__}.{method}: {parameter}"


def test_constructors_name_their_parameters() -> None:
    for name in mainspring.__all__:
        obj = getattr(mainspring, name)
        enums = ("ParallelMode", "RunStatus", "Streaming")
        if not inspect.isclass(obj) or name in ("JSON", "Inngest", *enums):
            continue
        section = _section(name)
        for parameter in inspect.signature(obj).parameters:
            if parameter in ("args", "kwargs", "self", "execution"):
                continue
            assert parameter in section, f"{name}: parameter {parameter} is not on the page"
