"""The production path trades (issue 14): ``wattmesh ledger run`` and three ``wattmesh
agent`` processes over a real Mosquitto, with no forecasting service anywhere. Each
agent orders on its own forecast from its own readings: the houses that export sell
what they exported in the last interval, those that import buy, and the market clears
within a few intervals of 2 s. The test waits for log lines, never sleeps."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.ledgerrunkit import BOOK, INTERVAL_S, MAX_POWER_W, LedgerProcess, write_market
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.messages import Side
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 30.0
# Summaries the market may take, once every agent's reading is in, until it clears.
CLEARS_WITHIN = 4


class AgentProcess:
    """``python -m wattmesh.cli agent --config FILE``, its log collected as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path) -> AgentProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattmesh.cli",
            "agent",
            "--config",
            str(config),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode().rstrip("\n"))

    async def stop(self) -> int:
        """SIGTERM; its exit code once it has gone and its log is read to the end."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), TIMEOUT_S)
        await asyncio.wait_for(self._reader, TIMEOUT_S)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


def _write_agent(folder: Path, agent_id: str, topics: Topics, broker: BrokerAddress) -> Path:
    """An ``agent.toml`` with a replayed meter: the household of :data:`BOOK` imports
    (a buyer) or exports (a seller) its quantity every interval, on the wall clock."""
    _, side, quantity_wh, _ = next(row for row in BOOK if row[0] == agent_id)
    demand_wh, pv_wh = (quantity_wh, 0) if side is Side.BUY else (0, quantity_wh)
    start = int(time.time()) // INTERVAL_S * INTERVAL_S - INTERVAL_S
    steps = 2_000  # an hour of 2 s intervals: well beyond the test
    profile = {
        "start": start,
        "interval_s": INTERVAL_S,
        "demand_wh": [demand_wh] * steps,
        "pv_wh": [pv_wh] * steps,
    }
    (folder / "profile.json").write_text(json.dumps(profile), encoding="utf-8")
    config = folder / "agent.toml"
    config.write_text(
        f'agent_id = "{agent_id}"\nmarket_id = "{topics.market_id}"\n'
        f'broker = "mqtt://{broker.host}:{broker.port}"\n'
        'key_file = "keys/private_key.pem"\nstate_dir = "state"\n'
        'operator_key_file = "operator/public_key.pem"\n'
        f"max_power_w = {MAX_POWER_W}\n"
        '[meter]\nkind = "replay"\nfile = "profile.json"\n',
        encoding="utf-8",
    )
    return config


@asynccontextmanager
async def _agents(
    market_folder: Path, keys: dict[str, SigningKey], topics: Topics, broker: BrokerAddress
) -> AsyncIterator[dict[str, AgentProcess]]:
    processes: dict[str, AgentProcess] = {}
    try:
        for agent_id, key in keys.items():
            folder = market_folder / agent_id
            write_key_pair(folder / "keys", key)
            operator = (market_folder / "operator" / "public_key.pem").read_bytes()
            (folder / "operator").mkdir()
            (folder / "operator" / "public_key.pem").write_bytes(operator)
            config = _write_agent(folder, agent_id, topics, broker)
            processes[agent_id] = await AgentProcess.start(config)
        yield processes
    finally:
        for process in processes.values():
            await process.kill()


async def _reported(broker: BrokerAddress, topics: Topics, agent_id: str, used: str) -> None:
    """Return once the agent's retained diagnostics say its orders use ``used``."""
    config = TransportConfig(address=broker, client_id=f"viewer-{uuid.uuid4().hex[:8]}")
    async with Transport(config, subscriptions=[(topics.diagnostics(agent_id), 1)]) as viewer:
        async with asyncio.timeout(TIMEOUT_S):
            async for message in viewer.messages():
                if json.loads(message.payload)["forecast_used"] == used:
                    return


async def test_ledger_run_and_agents_without_a_forecasting_service_trade(
    tmp_path: Path, mosquitto: BrokerAddress, db_url: str
) -> None:
    market = write_market(tmp_path / "market", db_url=db_url, broker=mosquitto)
    topics = market.topics
    ledger = await LedgerProcess.start(market.config)
    try:
        await ledger.until("leader of market")
        async with _agents(market.folder, dict(market.keys), topics, mosquitto) as agents:
            summary = await ledger.summary()
            while summary["readings"] != "3":  # until every agent is up
                summary = await ledger.summary()
            for _ in range(CLEARS_WITHIN):
                if int(summary["trades"]) > 0:
                    break
                summary = await ledger.summary()
            # The sellers' 150 Wh go to the buyers (200 + 100 Wh wanted).
            assert (summary["orders"], summary["volume"]) == ("3", "150"), summary.string
            assert summary["rejected"] == "0", summary.string
            following = await ledger.summary()  # and so on, interval after interval
            assert (following["orders"], following["volume"]) == ("3", "150")
            for agent_id in agents:
                await _reported(mosquitto, topics, agent_id, "persistence")
            codes = {agent_id: await process.stop() for agent_id, process in agents.items()}
        log = await ledger.stop()
    finally:
        await ledger.kill()
    assert codes == {agent_id: 0 for agent_id in codes}
    for agent_id, process in agents.items():
        text = "\n".join(process.lines)
        assert "Traceback" not in text, text
        changes = [line for line in process.lines if "orders use forecast" in line]
        assert changes[-1].endswith(
            f"{agent_id}: orders use forecast: persistence (last interval); before: none"
        ), text
        assert len(changes) == 2, text  # once per change, not every interval
    assert "Traceback" not in log
