"""``wattmesh forecast serve`` beside ``wattmesh ledger run``, and agents that trade on it.

:func:`write_forecast_config` adds the forecaster's key and ``forecast.toml`` to a
market of :mod:`tests.ledgerrunkit`; :func:`serve_process` runs the command as a
process whose log lines the test reads (:class:`tests.ledgerrunkit.LedgerProcess`);
:func:`trading_agents` runs the real :class:`agents.agent.HouseholdAgent` of each
household with a meter that makes it a buyer or a seller, trusting the forecaster's
key (no stand-in forecasts).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from tests.ledgerrunkit import MAX_POWER_W, ROOT, LedgerProcess, Market
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.transport import BrokerAddress, TransportConfig


class FlowMeter:
    """Registers that rise by fixed Wh per read: ``import_wh`` (a buyer) or ``pv_wh``
    with ``export_wh`` of it exported (a seller); time from the system clock."""

    def __init__(self, *, import_wh: int = 0, export_wh: int = 0, pv_wh: int = 0) -> None:
        self.step = (import_wh, export_wh, pv_wh)
        self.reads = 0

    async def read(self) -> MeterReading:
        self.reads += 1
        i, e, p = (self.reads * s for s in self.step)
        return MeterReading(int(time.time()), i, e, p, 100 if i else -100)


def write_forecast_config(
    market: Market,
    broker: BrokerAddress,
    *,
    ledger_url: str,
    interval_s: int,
    workers: int = 1,
) -> tuple[Path, SigningKey]:
    """The forecaster's key pair and ``forecast.toml`` beside the market's files."""
    key = write_key_pair(market.folder / "forecaster")
    path = market.folder / "forecast.toml"
    path.write_text(
        f'market_id = "{market.topics.market_id}"\n'
        'forecaster_key_file = "forecaster/private_key.pem"\n'
        'operator_key_file = "operator/public_key.pem"\n'
        'registry_file = "registry.json"\n'
        f"interval_s = {interval_s}\n"
        f'[database]\nurl = "sqlite:///{market.folder / "forecast.db"}"\n'
        f'[ledger]\nurl = "{ledger_url}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f"[refit]\nworkers = {workers}\n",
        encoding="utf-8",
    )
    return path, key


async def serve_process(config: Path) -> LedgerProcess:
    """``python -m wattmesh.cli forecast serve --config <config>``, lines readable."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wattmesh.cli", "forecast", "serve", "--config", str(config),
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # kill() stops its fitting processes too
    )  # fmt: skip
    return LedgerProcess(process)


@contextlib.asynccontextmanager
async def trading_agents(
    market: Market,
    broker: BrokerAddress,
    state_dir: Path,
    forecaster: SigningKey,
    meters: Mapping[str, FlowMeter],
) -> AsyncIterator[dict[str, HouseholdAgent]]:
    """The real agent of each household in ``meters``, running and connected."""
    topics = market.topics
    async with contextlib.AsyncExitStack() as stack:
        agents: dict[str, HouseholdAgent] = {}
        for agent_id, meter in meters.items():
            config = AgentConfig(
                agent_id=agent_id,
                topics=topics,
                operator_key=market.operator.verifying,
                forecaster_key=forecaster.verifying,
                max_power_w=MAX_POWER_W,
                forecast_timeout_s=3600,  # orders wait for the service's forecast
            )
            base = TransportConfig(address=broker, client_id=f"{topics.market_id}-{agent_id}")
            status = StatusSigner(market.keys[agent_id], topics, agent_id)
            transport = await stack.enter_async_context(
                agent_transport(config, base, status=status)
            )
            outbox = Outbox(state_dir / f"{agent_id}.sqlite")
            stack.callback(outbox.close)
            publisher = await stack.enter_async_context(
                DurablePublisher(outbox, transport, commit_interval_s=0)
            )
            agents[agent_id] = HouseholdAgent(
                config, key=market.keys[agent_id], transport=transport, meter=meter,
                publisher=publisher,
            )  # fmt: skip
        await asyncio.wait_for(
            asyncio.gather(*(a.transport.wait_connected() for a in agents.values())), 10
        )
        tasks = [asyncio.create_task(agent.run()) for agent in agents.values()]
        try:
            yield agents
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
