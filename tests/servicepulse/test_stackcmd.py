"""What ``servicepulse down`` and ``status`` look for: known from the pid files alone."""

from __future__ import annotations

from pathlib import Path

from servicepulse.stackcmd import _saved_plan


def test_down_covers_every_processor_that_left_a_pid_file(tmp_path: Path) -> None:
    names = {p.name for p in _saved_plan(tmp_path)}
    assert {"kafka", "api", "processor-8"} <= names
    assert "processor-9" not in names
    (tmp_path / "processor-11.pid").write_text("1")
    names = {p.name for p in _saved_plan(tmp_path)}
    assert {"processor-9", "processor-11"} <= names
    assert "processor-12" not in names
