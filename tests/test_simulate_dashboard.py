"""``wattmesh simulate --dashboard``: the URL first, with the operator's one-time login
link and token file; the dashboard during and after the run until SIGINT; ``--html``:
the report as one HTML file. A real process, Mosquitto and SQLite; three households,
one day, the naive forecaster."""

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
from wattmesh.dashboard.auth import COOKIE_NAME

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
        *("--currency", "GBP"),
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
        link = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
        said = "dashboard: operator login (once, within 1 h): "
        assert link.startswith(f"{said}{url}login?ticket="), link
        link = link.removeprefix(said).strip()
        token_file = workdir / "dashboard-operator-token"
        told = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
        assert told == f"dashboard: operator token in {token_file} (the login page takes it)\n"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        assert len(token) >= 32
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(url + "api/households") as response:
                assert response.status == 401  # the researcher's table: the operator's
            async with http.get(link, allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"] == "/#/households"
                operator = {"Cookie": f"{COOKIE_NAME}={response.cookies[COOKIE_NAME].value}"}
            async with http.get(url + "api/session", headers=operator) as response:
                assert (await response.json())["role"] == "operator"
            async with http.get(link, allow_redirects=False) as response:
                assert response.status == 401  # once only
            async with http.post(url + "api/login/operator", json={"token": token}) as response:
                assert response.status == 200  # the file's token, on the login page
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

            def caught_up(view: dict[str, Any]) -> bool:
                """The log followed to its end, the agents' offline statuses and the
                closing round's announcement heard."""
                root, idle = report["ledger_root"], view["market"]["state"] == "idle"
                online = view["agents"]["online"]
                return bool(view["ledger"]["root_hex"] == root and online == 0 and idle)

            # The dashboard follows the log to its end: the run's root, its trades.
            async with asyncio.timeout(TIMEOUT_S):
                while not caught_up(last := await overview()):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)  # another process's state: no event to wait on
            assert last["market_id"] == "sim"
            assert last["ledger"]["trades"] == report["trades"]
            assert last["currency"] == "GBP"  # the run's
            verified = last["ledger"]["last_verify"]  # the run's own verification, at its end
            assert verified["ok"] is True and verified["problem"] is None
            assert verified["tree_size"] == report["ledger_entries"]
            assert verified["kid"] == checkpoints["operator"]["kid"]
            assert verified["anchored"] is True  # the run's own key, not the stored one
            assert last["agents"] == {"online": 0, "known": 3}  # they went offline cleanly
            # simulated time in 2025, closed: no wall-clock interval, no countdown
            assert (last["current_interval"], last["next_close_s"]) == (None, None)
            async with http.get(url + "api/households", headers=operator) as response:
                assert response.status == 200
                assert len((await response.json())["households"]) == 3
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
