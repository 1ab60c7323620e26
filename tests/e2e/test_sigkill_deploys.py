"""SIGKILL an embedded engine under the first version of a function, then start the
second version on the same database (issue: deploys, rules 1 and 3, with a crash in
place of a clean stop). The engine process is ``deploy_sigkill_app.py``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from tests.e2e import deploy_sigkill_app as app
from tests.e2e.sigkill_support import Incarnation

pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(app.__file__)
TIMEOUT = 30.0


def deploy(tmp: pathlib.Path, scenario: str) -> tuple[str, Any, list[str]]:
    """v1 until its kill point, SIGKILL, then v2 to the run's end: the final status, the
    output or error, and the effects log."""
    first = Incarnation(SCRIPT, tmp, 1, f"{scenario}-v1")
    try:
        first.wait_for_output("ready-to-kill", TIMEOUT)
        first.sigkill()
    finally:
        first.cleanup()
    second = Incarnation(SCRIPT, tmp, 2, f"{scenario}-v2")
    try:
        assert second.finish(TIMEOUT) == 0, second.output()
    finally:
        second.cleanup()
    line = next(ln for ln in second.output().splitlines() if ln.startswith("done "))
    _, status, result = line.split(" ", 2)
    return status, json.loads(result), (tmp / "effects.log").read_text().splitlines()


def test_a_group_member_renamed_after_a_crash_mid_retry_is_replaced(
    tmp_path: pathlib.Path,
) -> None:
    status, output, effects = deploy(tmp_path, "group")
    assert status == "Completed", output
    assert output == ["one", "new"]
    assert effects.count("p1 0") == 1  # recorded once, never again
    assert "p2x 0" in effects


def test_a_renamed_step_after_a_crash_mid_retry_starts_at_attempt_0(
    tmp_path: pathlib.Path,
) -> None:
    status, output, effects = deploy(tmp_path, "budget")
    assert status == "Completed", output
    assert output == 0
    assert effects == ["before 0", "charge 0", "charge-v2 0"]


def test_a_step_id_reused_by_another_kind_after_a_crash_fails_naming_both(
    tmp_path: pathlib.Path,
) -> None:
    status, error, effects = deploy(tmp_path, "kind")
    assert status == "Failed"
    assert error["name"] == "StepKindChangedError"
    assert "step 'nap' was recorded as step.sleep" in error["message"]
    assert not any(line.startswith("nap ") for line in effects)  # never ran on the memo


def test_an_error_on_a_result_recorded_before_a_crash_names_its_app_version(
    tmp_path: pathlib.Path,
) -> None:
    status, error, effects = deploy(tmp_path, "shape")
    assert status == "Failed"
    assert "'dict' object has no attribute 'upper'" in error["message"]
    assert "'fetch' (app version 'v1'); the app now runs app version 'v2'" in error["message"]
    assert effects == ["fetch 0"]
