"""The parts need nothing the generated ACL denies (issue 15): ``wattmesh ledger run``
and two ``wattmesh agent`` processes (with Home Assistant discovery on) run from the
files ``wattmesh provision`` wrote, against the generated Mosquitto (``log_type all``:
it logs every publish its ACL denies), for a few 2 s intervals until the agents
trade and audit the ledger's receipts; then ``ledger verify``'s check passes. Only
the addresses, the database and the state folders are the machine's own
(tests/provisionkit.py), and, as no forecasting service
runs here and the intervals are 2 s, the agents order on their own forecast and replay
a small profile of 2 s steps (h001 imports, h002 exports 5 Wh each interval). No
sleeps: the test waits for the ledger's summaries and the agents' retained
diagnostics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.ledgerrunkit import LedgerProcess
from tests.provisionkit import Neighbourhood, client, generated_broker, make_neighbourhood
from tests.test_production_path import AgentProcess
from wattmesh.broker.keys import load_signing_key
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

pytestmark = pytest.mark.slow

TIMEOUT_S = 30.0
SUMMARIES = 8  # at most, until both agents' orders are in one interval


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


async def _audited(hood: Neighbourhood, agent: str) -> dict[str, object]:
    """The agent's retained diagnostics, read with its own credentials, once its audit
    has checked a receipt (it read its receipts and the checkpoints)."""
    async with client(hood, agent) as viewer:
        await viewer.subscribe(hood.topics.diagnostics(agent), qos=1)
        async with asyncio.timeout(TIMEOUT_S):
            async for message in viewer.messages:
                report = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                audit = report["audit"]
                if audit is not None and audit["receipts_checked"] > 0:
                    return dict(report)
    raise AssertionError("unreachable")


async def test_ledger_and_agents_run_under_the_generated_acl_with_nothing_denied(
    tmp_path: Path,
) -> None:
    hood = make_neighbourhood(
        tmp_path / "hood",
        households=2,
        db_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        interval_s=2,
        home_assistant=True,
    )
    layout = hood.done.layout
    async with generated_broker(hood, tmp_path / "mosquitto") as broker:
        ledger = await LedgerProcess.start(layout.ledger / "ledger.toml")
        agents: list[AgentProcess] = []
        try:
            await ledger.until("leader of market")
            for agent in hood.done.agent_ids:
                _on_own_forecast(layout.household(agent), buyer=agent == "h001")
                agents.append(await AgentProcess.start(layout.household(agent) / "agent.toml"))
            for _ in range(SUMMARIES):
                summary = await ledger.summary()
                if summary["orders"] == summary["readings"] == "2":
                    break
            assert (summary["orders"], summary["readings"]) == ("2", "2"), summary.string
            assert summary["rejected"] == "0", summary.string
            for _ in range(SUMMARIES):
                if int(summary["trades"]) > 0:
                    break
                summary = await ledger.summary()
            assert int(summary["trades"]) > 0, summary.string
            reports = [await _audited(hood, agent) for agent in hood.done.agent_ids]
            codes = [await process.stop() for process in agents]
            log = await ledger.stop()
        finally:
            for process in agents:
                await process.kill()
            await ledger.kill()
        broker_log = broker.log_path.read_text(encoding="utf-8")
    assert codes == [0, 0], [p.lines[-10:] for p in agents]
    assert all(r["audit"]["alarms"] == {} for r in reports), reports  # type: ignore[index]
    assert "Traceback" not in log
    store = LedgerStore.read_only(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        operator = load_signing_key(layout.ledger / "operator_key.pem").verifying
        report = verify_ledger(store, operator)
    finally:
        store.close()
    assert report.ok, report.problem
    denied = [line for line in broker_log.splitlines() if "Denied" in line]
    assert denied == []
    # The log is the one the ACL writes to: every part connected and published there,
    # Home Assistant's discovery included.
    for user in ("ledger", *hood.done.agent_ids):
        assert f"u'{user}'" in broker_log
    assert "Received PUBLISH from" in broker_log and "/config'" in broker_log
