"""``wattmesh meter read`` in a real subprocess: P1 capture file, Modbus TCP, bad SPEC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.p1kit import corrupt, telegram
from tests.test_modbus import ModbusSim, float32_words, input_registers

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "meter", "read", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


def test_p1_file_reading_as_json(tmp_path: Path) -> None:
    path = tmp_path / "p1.txt"
    path.write_bytes(
        corrupt(telegram()) + telegram(stamp="261025020000W", power_delivered="01.000")
    )
    result = _cli("--meter", f"p1-file:{path}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "meter": f"p1-file:{path}",
        "time": "2026-10-25T01:00:00Z",
        "meter_time": 1792890000,
        "import_wh": 22_222_221,
        "export_wh": 3_580_245,
        "power_w": 193,
    }


def test_text_output_names_units(tmp_path: Path) -> None:
    path = tmp_path / "p1.txt"
    path.write_bytes(telegram())
    result = _cli("--meter", f"p1-file:{path}")
    assert result.returncode == 0, result.stderr
    assert "time       2026-12-01T13:30:15Z" in result.stdout
    assert "import_wh  22222221" in result.stdout and "power_w    1193" in result.stdout


def test_bad_spec_is_one_line_and_exit_2() -> None:
    result = _cli("--meter", "p1-tcp:nohost")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "missing host or port" in result.stderr


def test_no_reading_is_exit_1_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "p1.txt"
    path.write_bytes(corrupt(telegram()))
    result = _cli("--meter", f"p1-file:{path}")
    assert result.returncode == 1
    assert "1 bad CRC" in result.stderr


async def test_modbus_tcp_meter_read() -> None:
    sim = ModbusSim()
    sim.tables["input"][:] = input_registers(
        {0x34: float32_words(1500.0), 0x48: float32_words(2.5), 0x4A: float32_words(0.125)}
    )
    await sim.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattmesh.cli",
            "meter",
            "read",
            "--meter",
            f"modbus-tcp:127.0.0.1:{sim.port}/1?map=sdm630",
            "--json",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await sim.stop()
    assert process.returncode == 0, stderr.decode()
    reading = json.loads(stdout)
    assert (reading["import_wh"], reading["export_wh"], reading["power_w"]) == (2500, 125, 1500)
