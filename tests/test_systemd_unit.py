"""The shipped systemd units parse cleanly (systemd-analyze verify, when available)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "docs" / "systemd"
UNIT = UNITS / "wattmesh-agent.service"
LEDGER_UNIT = UNITS / "wattmesh-ledger.service"
FORECAST_UNIT = UNITS / "wattmesh-forecast.service"


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


def test_ledger_unit_validates_first_and_gives_the_operator_time_to_close() -> None:
    text = LEDGER_UNIT.read_text(encoding="utf-8")
    for line in (
        "Restart=always",
        "ExecStartPre=/opt/wattmesh/bin/wattmesh ledger run --config "
        "/etc/wattmesh/ledger.toml --validate-config",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "ProtectSystem=strict",
    ):
        assert line in text


def test_forecast_unit_validates_first_and_stops_on_sigterm() -> None:
    text = FORECAST_UNIT.read_text(encoding="utf-8")
    for line in (
        "Restart=always",
        "ExecStartPre=/opt/wattmesh/bin/wattmesh forecast serve --config "
        "/etc/wattmesh/forecast.toml --validate-config",
        "ExecStart=/opt/wattmesh/bin/wattmesh forecast serve --config /etc/wattmesh/forecast.toml",
        "KillSignal=SIGTERM",
        "After=network-online.target time-sync.target postgresql.service wattmesh-ledger.service",
        "ProtectSystem=strict",
    ):
        assert line in text


@pytest.mark.parametrize("unit", [UNIT, LEDGER_UNIT, FORECAST_UNIT], ids=lambda u: u.stem)
def test_systemd_analyze_verify_reports_nothing(tmp_path: Path, unit: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text(encoding="utf-8"), encoding="utf-8")
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
