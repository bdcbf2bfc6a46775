"""The shipped systemd unit parses cleanly (systemd-analyze verify, when available)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "docs" / "systemd" / "wattmesh-agent.service"


def test_unit_has_the_promised_settings() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "Restart=always",
        "SupplementaryGroups=dialout",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "--validate-config",
    ):
        assert line in text


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    # The binary lives on the Pi, not here; everything else must be clean.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert problems == []
