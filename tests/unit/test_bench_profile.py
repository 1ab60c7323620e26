"""bench/profile.py files a profile's time by phase, and its command runs (no timing is
checked: figures belong to the bench, not to the suite)."""

from __future__ import annotations

import pytest

from bench import profile


@pytest.mark.parametrize(
    ("where", "phase"),
    [
        ("/x/mainspring/engine/store/sqlite.py transact", "store (SQLite units, commits)"),
        ("/x/mainspring/sdk/serve/handler.py handle", "SDK serve handler"),
        ("/x/mainspring/sdk/execution.py step_async", "SDK replay core and steps"),
        ("/x/mainspring/protocol/wire.py request_to_wire", "wire: JSON, signing, protocol"),
        ("/x/mainspring/engine/http_transport.py call", "HTTP client and transport"),
        ("/x/mainspring/engine/executor.py run_job", "engine: executor, queue, flow"),
        ("/usr/lib/python3.11/asyncio/base_events.py _run_once", "event loop (asyncio)"),
        ("/x/pydantic/main.py __init__", profile.OTHER),
    ],
)
def test_frames_are_filed_by_phase(where: str, phase: str) -> None:
    assert profile.phase_of(where) == phase


@pytest.mark.parametrize("http", [False, True], ids=["embedded", "http"])
def test_the_command_profiles_a_run(http: bool, capsys: pytest.CaptureFixture[str]) -> None:
    profile.main(["--steps", "3", *(["--http"] if http else [])])
    out = capsys.readouterr().out
    assert "3 sequential steps" in out
    assert "SDK replay core and steps" in out
    shares = [line for line in out.splitlines() if line.startswith("| ") and "%" in line]
    assert sum(int(line.split("|")[2].strip().rstrip("%")) for line in shares) in range(95, 106)


def test_the_readme_has_the_profile_section() -> None:
    text = profile.README.read_text()
    assert text.index(profile.BEGIN) < text.index(profile.END)
