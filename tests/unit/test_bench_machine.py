"""bench/machine.py's pace probe: both figures are measured (positive, and the loop one
grows with the work asked of it), its scratch file is removed, and the line says which is
which."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import machine


def test_the_pace_is_two_positive_medians_and_leaves_no_file(tmp_path: Path) -> None:
    loop_ms, sync_us = machine.pace(tmp_path)
    assert loop_ms > 0
    assert sync_us > 0
    assert list(tmp_path.iterdir()) == []


def test_the_loop_figure_times_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "PACE_SYNCS", 1)
    short, _ = machine.pace(tmp_path)
    monkeypatch.setattr(machine, "PACE_LOOP", machine.PACE_LOOP * 20)
    long, _ = machine.pace(tmp_path)
    assert long > short * 5


def test_the_printed_line_names_both_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "pace", lambda workdir: (12.34, 156.7))
    machine.print_pace(tmp_path, "before")
    assert capsys.readouterr().out == (
        "machine pace (before): python loop 12.3 ms, 4 KiB write + fdatasync 157 µs "
        "(lower is faster)\n"
    )
