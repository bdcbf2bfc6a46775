"""The neighbourhood ``wattmesh provision`` writes, run as local processes (issue 15):
the generated Mosquitto (its ACL, passwords and TLS listener; ``log_type all``, so it
logs every publish its ACL denies), a private PostgreSQL, ``ledger run``, ``forecast
serve``, ``dashboard serve`` and two ``wattmesh agent`` processes (Home Assistant
discovery on), every part connecting over TLS with its client certificate and password.
A few 2 s intervals: the agents trade and audit their receipts, the dashboard shows
the trades, the agents online and the forecaster's health, Mosquitto denied nothing,
and ``ledger verify``'s check passes.

Only what is the machine's own is overridden: addresses and ports (1883 and 5432 are
taken here), the database URL, the state folders (tests/provisionkit.py), and, as the
forecasting service has no history to fit and the intervals are 2 s, the agents order
on their own forecast from a small profile of 2 s steps (h001 imports, h002 exports
5 Wh each interval). No sleeps: the test waits for log lines, the ledger's summaries,
the agents' retained diagnostics and the dashboard's pushed events."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ledgerrunkit import LedgerProcess
from tests.provisionkit import (
    Neighbourhood,
    PartProcess,
    client,
    generated_broker,
    make_neighbourhood,
)
from wattmesh.broker.keys import load_signing_key
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TIMEOUT_S = 60.0
SUMMARIES = 8  # at most, once both agents' readings are in, until a trade


def _on_own_forecast(folder: Path, *, buyer: bool) -> None:
    """No forecaster key (orders on the agent's own forecast) and a 2 s profile."""
    config = folder / "agent.toml"
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    config.write_text("".join(x for x in lines if "forecaster_key_file" not in x), "utf-8")
    steps = 2_000  # more than an hour of 2 s intervals
    profile = {
        "start": int(time.time()) // 2 * 2 - 2,
        "interval_s": 2,
        "demand_wh": [5 if buyer else 0] * steps,
        "pv_wh": [0 if buyer else 5] * steps,
    }
    (folder / "profile.json").write_text(json.dumps(profile), encoding="utf-8")


async def _audited(hood: Neighbourhood, agent: str) -> dict[str, Any]:
    """The agent's retained diagnostics, read with its own credentials, once its audit
    has checked a receipt (it read its receipts and the checkpoints)."""
    async with client(hood, agent) as viewer:
        await viewer.subscribe(hood.topics.diagnostics(agent), qos=1)
        async with asyncio.timeout(TIMEOUT_S):
            async for message in viewer.messages:
                report: dict[str, Any] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if report["audit"] is not None and report["audit"]["receipts_checked"] > 0:
                    return report
    raise AssertionError("unreachable")


async def _dashboard_shows(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The dashboard's pushed events until one overview has trades and both agents
    online, and the forecaster's health came from the bus; that overview."""
    overview: dict[str, Any] | None = None
    forecaster = False
    async with asyncio.timeout(TIMEOUT_S):
        async for frame in socket:
            event = json.loads(frame.data)
            if event["type"] == "health" and event.get("forecaster"):
                forecaster = True
            shown = event.get("overview") if event["type"] == "interval" else None
            if shown and shown["ledger"]["trades"] > 0 and shown["agents"]["online"] == 2:
                overview = shown
            if overview is not None and forecaster:
                return overview
    raise AssertionError("the dashboard's socket closed")


async def test_the_provisioned_neighbourhood_runs_over_tls_with_nothing_denied(
    tmp_path: Path, pg_url: str
) -> None:
    hood = make_neighbourhood(
        tmp_path / "hood", households=2, db_url=pg_url, interval_s=2, home_assistant=True, tls=True
    )
    layout = hood.done.layout
    agents: list[PartProcess] = []
    parts: list[PartProcess] = []
    async with generated_broker(hood, tmp_path / "mosquitto") as broker:
        ledger = await LedgerProcess.start(layout.ledger / "ledger.toml")
        try:
            await ledger.until("leader of market")
            dashboard = await PartProcess.start(
                "dashboard", "serve", "--config", str(layout.dashboard / "dashboard.toml")
            )
            parts.append(dashboard)
            url = (await dashboard.until("dashboard: http")).split("dashboard: ", 1)[1]
            async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}ws") as socket:
                forecaster = await PartProcess.start(
                    "forecast", "serve", "--config", str(layout.forecasting / "forecast.toml")
                )
                parts.append(forecaster)
                for agent in hood.done.agent_ids:
                    _on_own_forecast(layout.household(agent), buyer=agent == "h001")
                    config = str(layout.household(agent) / "agent.toml")
                    agents.append(await PartProcess.start("agent", "--config", config))
                async with asyncio.timeout(TIMEOUT_S):  # the agents' start, on a busy machine
                    while (summary := await ledger.summary())["readings"] != "2":
                        pass
                for _ in range(SUMMARIES):
                    if int(summary["trades"]) > 0:
                        break
                    summary = await ledger.summary()
                assert (summary["orders"], summary["readings"]) == ("2", "2"), summary.string
                assert int(summary["trades"]) > 0 and summary["rejected"] == "0", summary.string
                overview = await _dashboard_shows(socket)
                async with http.get(f"{url}api/ledger/trades?limit=5") as response:
                    trades = (await response.json())["trades"]
            reports = [await _audited(hood, agent) for agent in hood.done.agent_ids]
            codes = [await process.stop() for process in (*agents, *parts)]
            log = await ledger.stop()
        finally:
            for process in (*agents, *parts):
                await process.kill()
            await ledger.kill()
        broker_log = broker.log_path.read_text(encoding="utf-8")
    assert codes == [0] * 4, [p.lines[-10:] for p in (*agents, *parts)]
    assert {t["buyer"] for t in trades} == {"h001"} and {t["seller"] for t in trades} == {"h002"}
    assert overview["market_id"] == hood.done.market_id
    assert all(r["audit"]["alarms"] == {} for r in reports), reports
    assert "Traceback" not in log
    assert not any("Traceback" in line for p in (*agents, *parts) for line in p.lines)
    store = LedgerStore.read_only(pg_url)
    try:
        operator = load_signing_key(layout.ledger / "operator_key.pem").verifying
        report = verify_ledger(store, operator)
    finally:
        store.close()
    assert report.ok, report.problem
    assert [line for line in broker_log.splitlines() if "Denied" in line] == []
    # That log is the ACL's: every part logged in over TLS as its user, and Home
    # Assistant's discovery was published there.
    for user in ("ledger", "forecaster", "dashboard", *hood.done.agent_ids):
        assert f"u'{user}'" in broker_log, user
    assert (
        f"listener on port {hood.tls_port}" in broker_log.lower()
        or str(hood.tls_port) in broker_log
    )
    assert "/config'" in broker_log
