"""pytest plugin of the testing kit. Enable it in a test module or the root conftest.py::

    pytest_plugins = ["mainspring.testing.fixtures"]

(or ``pytest -p mainspring.testing.fixtures``). Async tests need an async runner such as
pytest-asyncio. Annotate the fixture with ``mainspring.testing.TimeMachineFactory``: a test
module that imports this module itself gets it imported before pytest can load it as a
plugin (which pytest warns about).
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from mainspring.sdk.client import Client
from mainspring.sdk.function import Function
from mainspring.testing.time_travel import TimeMachine, TimeMachineFactory, time_machine


@pytest.fixture
def mainspring_time_machine(tmp_path: pathlib.Path) -> TimeMachineFactory:
    """``async with mainspring_time_machine(client, [fn]) as tm:`` an embedded engine on a
    manual clock, its database in the test's ``tmp_path`` (kept by pytest for a look after
    a failure). Keywords as :func:`mainspring.testing.time_machine`."""
    numbers = itertools.count(1)

    def factory(
        client: Client, functions: Iterable[Function[Any]], **options: Any
    ) -> AbstractAsyncContextManager[TimeMachine]:
        options.setdefault("database", tmp_path / f"mainspring-{next(numbers)}.db")
        return time_machine(client, functions, **options)

    return factory
