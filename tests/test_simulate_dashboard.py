"""``wattmesh simulate --dashboard``: the URL first, the dashboard during and after the
run until SIGINT; ``--html``: the report as one HTML file. A real process, Mosquitto
and SQLite; three households, one day, the naive forecaster."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wattmesh.broker.transport import BrokerAddress

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120.0


async def test_the_dashboard_serves_the_run_and_after_it_until_sigint(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    workdir, html = tmp_path / "out", tmp_path / "share" / "report.html"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wattmesh.cli", "simulate", "--households", "3", "--days", "1"),
        *("--seed", "3", "--forecaster", "naive", "--broker", mosquitto.url, "--quiet"),
        *("--workdir", str(workdir), "--dashboard", "--dashboard-port", "0", "--html", str(html)),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
        assert first.startswith("dashboard: http://127.0.0.1:"), first
        url = first.removeprefix("dashboard: ").strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "api/health") as response:
                assert response.status == 200  # while the run goes on
            after = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
            assert after == f"dashboard: {url} (still serving; Ctrl-C to stop)\n"
            report = json.loads((workdir / "report.json").read_text(encoding="utf-8"))
            assert report["verified"] is True
            assert html.is_file() and "<html" in html.read_text(encoding="utf-8").lower()
            async with http.get(url + "api/health") as response:
                assert response.status == 200
                health = await response.json()
            assert health["broker"]["configured"] is True
            async with http.get(url + "api/ledger/checkpoints") as response:
                assert response.status == 200
                checkpoints = await response.json()
            assert checkpoints["operator"]["kid"]

            async def overview() -> dict[str, Any]:
                async with http.get(url + "api/overview") as response:
                    assert response.status == 200
                    answer: dict[str, Any] = await response.json()
                    return answer

            # The dashboard follows the log to its end: the run's root, its trades.
            async with asyncio.timeout(TIMEOUT_S):
                root = report["ledger_root"]
                while (last := await overview())["ledger"]["root_hex"] != root:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)  # another process's state: no event to wait on
            assert last["market_id"] == "sim"
            assert last["ledger"]["trades"] == report["trades"]
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
