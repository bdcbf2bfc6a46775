"""A short real market for audit tests: ledger service, household agents, a forecaster,
all over one Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.ledgerkit import T0
from wattmesh.agents._audit import Auditor, CheckpointFile
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import ForecastBody, ReadingBody, decode_message, sign_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.store import LedgerStore

TIMEOUT_S = 10.0
STEP = 900
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)
# Per household: (demand, pv) Wh forecast for every interval: h001 buys, h002 sells.
PLAN = {"h001": (1_000, 0), "h002": (0, 1_500)}


class StepMeter:
    """A meter that advances one interval per read: meter time T0 + n * STEP."""

    def __init__(self, demand_wh: int, pv_wh: int) -> None:
        self.demand_wh, self.pv_wh, self.reads = demand_wh, pv_wh, 0

    async def read(self) -> MeterReading:
        n = self.reads
        self.reads += 1
        net = n * (self.demand_wh - self.pv_wh)
        return MeterReading(T0 + n * STEP, max(net, 0), max(-net, 0), n * self.pv_wh, 0)


@dataclass
class Market:
    topics: Topics
    ledger: Ledger
    service: LedgerService
    agents: dict[str, HouseholdAgent]
    mosquitto: BrokerAddress
    interval: int = T0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    make_agent: Callable[[str], Awaitable[HouseholdAgent]] | None = None
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def restart(self, agent_id: str) -> HouseholdAgent:
        """Stop one agent and start a new one with the same key, sequence and state dir."""
        self.running[agent_id].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.running[agent_id]
        assert self.make_agent is not None
        agent = self.agents[agent_id] = await self.make_agent(agent_id)
        await asyncio.wait_for(agent.transport.wait_connected(), TIMEOUT_S)
        self.running[agent_id] = asyncio.create_task(agent.run())
        self.tasks.append(self.running[agent_id])
        return agent

    async def run_intervals(self, count: int) -> None:
        """Run ``count`` trading intervals (each waits for every agent's reading and
        order, which the agents send after handling the previous interval's receipts)."""
        for _ in range(count):
            await self.service.run_interval(self.interval, TARIFF)
            self.interval += STEP

    async def until_all(self, check: Callable[[Auditor], bool]) -> None:
        """Wait until ``check`` holds for every agent's auditor."""
        for agent in self.agents.values():
            audit = agent.audit
            assert audit is not None
            await until(agent, functools.partial(check, audit))


async def until(agent: HouseholdAgent, condition: Callable[[], bool]) -> None:
    """Wait (on the agent's audit event, with a timeout) until ``condition`` holds."""

    async def wait() -> None:
        while not condition():
            agent.audited.clear()
            if condition():
                return
            await agent.audited.wait()

    await asyncio.wait_for(wait(), TIMEOUT_S)


async def _forecaster(transport: Transport, topics: Topics, key: SigningKey) -> None:
    """Answer each reading with a one-step forecast from PLAN."""
    async for message in transport.messages():
        decoded = decode_message(message.payload)
        if not isinstance(decoded.body, ReadingBody):
            continue
        agent, interval = decoded.header.agent, decoded.header.interval
        demand, pv = PLAN[agent]
        body = ForecastBody(interval, STEP, (demand,), (pv,), "zero", None)
        wire = sign_message(
            key,
            body,
            market=topics.market_id,
            interval=interval,
            agent="forecaster",
            seq=interval,
            expires=interval + STEP,
        ).to_wire()
        await transport.publish(topics.forecast(agent), wire, qos=1)


def new_ledger(
    path: Path, market: str, operator: SigningKey, keys: dict[str, SigningKey]
) -> Ledger:
    ledger = Ledger(LedgerStore(f"sqlite:///{path}"), market_id=market, operator_key=operator)
    ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0 - STEP)
    return ledger


@contextlib.asynccontextmanager
async def market(
    mosquitto: BrokerAddress,
    tmp_path: Path,
    *,
    service_type: type[LedgerService] = LedgerService,
    operator: SigningKey | None = None,
    keys: dict[str, SigningKey] | None = None,
    market_id: str | None = None,
) -> AsyncIterator[Market]:
    """A running market: ledger service with ingest, forecaster, agents (state in
    ``tmp_path/<agent>``, diagnostics on, no clock check)."""
    market_id = market_id or f"m{uuid.uuid4().hex[:8]}"
    topics = Topics(market_id)
    operator = operator or SigningKey.generate()
    keys = keys or {a: SigningKey.generate() for a in PLAN}
    forecaster = SigningKey.generate()
    ledger = new_ledger(tmp_path / f"ledger-{uuid.uuid4().hex[:6]}.db", market_id, operator, keys)

    def config(name: str) -> TransportConfig:
        return TransportConfig(address=mosquitto, client_id=f"{name}-{uuid.uuid4().hex[:8]}")

    async with contextlib.AsyncExitStack() as stack:
        ingest = await stack.enter_async_context(
            Transport(config("ledger"), subscriptions=ledger_subscriptions(topics))
        )
        forecasts = await stack.enter_async_context(
            Transport(config("forecaster"), subscriptions=[(topics.all_readings, 1)])
        )
        service = service_type(
            ledger, OperatorConfig(topics, interval_s=STEP), key=operator, transport=ingest
        )
        sequences = {a: MemorySequence() for a in PLAN}

        async def make_agent(agent_id: str) -> HouseholdAgent:
            agent_config = AgentConfig(
                agent_id=agent_id,
                topics=topics,
                operator_key=operator.verifying,
                forecaster_key=forecaster.verifying,
                max_clock_drift_s=None,
                diagnostics_interval_s=3600,
                forecast_timeout_s=TIMEOUT_S,
            )
            transport = await stack.enter_async_context(
                agent_transport(agent_config, config(agent_id))
            )
            state = tmp_path / agent_id
            state.mkdir(exist_ok=True)
            return HouseholdAgent(
                agent_config,
                key=keys[agent_id],
                transport=transport,
                meter=meters[agent_id],
                sequence=sequences[agent_id],
                checkpoints=CheckpointFile(state / "checkpoint.note"),
            )

        meters = {a: StepMeter(d, p) for a, (d, p) in PLAN.items()}
        agents = {a: await make_agent(a) for a in PLAN}
        await asyncio.wait_for(
            asyncio.gather(
                ingest.wait_connected(),
                forecasts.wait_connected(),
                *(a.transport.wait_connected() for a in agents.values()),
            ),
            TIMEOUT_S,
        )
        result = Market(topics, ledger, service, agents, mosquitto, make_agent=make_agent)
        result.running = {a: asyncio.create_task(agent.run()) for a, agent in agents.items()}
        result.tasks = [
            asyncio.create_task(service.run_ingest()),
            asyncio.create_task(_forecaster(forecasts, topics, forecaster)),
            *result.running.values(),
        ]
        try:
            yield result
        finally:
            for task in result.tasks:
                task.cancel()
            await asyncio.gather(*result.tasks, return_exceptions=True)
            ledger.store.close()
