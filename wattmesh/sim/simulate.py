"""``wattmesh simulate``: a whole neighbourhood on one machine, over a real MQTT broker.

Every part runs as it would in production (household agents, forecasting service,
ledger and market operator, each with its own MQTT connection); only time is simulated:
the operator opens the next interval as soon as the previous one has cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.battery_meter import BatteryMeter
from wattmesh.agents.meter import MarketClock, Meter, SimulatedMeter
from wattmesh.agents.presence import StatusSigner
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.forecasting.service import ForecasterConfig, ForecastService
from wattmesh.ledger.ledger import IntervalOutcome, Ledger
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger
from wattmesh.sim.battery_report import battery_balances
from wattmesh.sim.faults import (
    METER_KINDS,
    FaultyMeter,
    InjectedFault,
    detections_from_log,
    inject_profiles,
    plan_faults,
    score_faults,
    undeclared_export_wh,
)
from wattmesh.sim.log_anomalies import LogAnomalies, publish_flags
from wattmesh.sim.plan import build_planned
from wattmesh.sim.report import build_report
from wattmesh.sim.scenario import HouseholdProfile, Scenario
from wattmesh.sim.sim_config import SimulationConfig, parse_broker_url_or_config_error
from wattmesh.sim.simkeys import simulation_key

Progress = Callable[[int, int], None]
__all__ = ["RunSite", "SimulationConfig", "Watcher", "run_simulation"]

OPERATOR_KEY_FILE = "operator_public_key.pem"
"""In the workdir: the run's operator public key, for ``ledger verify --operator-key``."""


@dataclass(frozen=True)
class RunSite:
    """Where a running simulation can be watched (``simulate --dashboard``): its ledger
    database, broker, market and the public keys of the operator and the forecaster."""

    db_url: str
    broker: BrokerAddress
    market_id: str
    operator_key: VerifyingKey
    forecaster_key: VerifyingKey


class Watcher(Protocol):
    """Someone watching the run: told where it runs before the first interval opens,
    and given the report while the broker still runs (their return ends the run)."""

    def started(self, site: RunSite) -> None: ...

    async def finished(self, report: dict[str, Any]) -> None: ...


async def check_reachable(address: BrokerAddress, timeout_s: float = 5.0) -> None:
    """Connect once with a clean MQTT session; raise ConfigError if no broker answers."""
    import aiomqtt

    client = aiomqtt.Client(
        address.host,
        address.port,
        identifier=f"wattmesh-probe-{os.getpid()}",
        protocol=aiomqtt.ProtocolVersion.V311,
        timeout=timeout_s,
    )
    try:
        async with client:
            pass
    except aiomqtt.MqttError as exc:
        raise ConfigError(f"cannot reach the MQTT broker at {address.url}") from exc


@contextlib.asynccontextmanager
async def open_broker(spec: str, workdir: Path) -> AsyncIterator[tuple[BrokerAddress, str]]:
    """The broker to use: a given URL, a private Mosquitto, or the embedded amqtt broker."""
    if spec != "auto":
        address = parse_broker_url_or_config_error(spec)
        await check_reachable(address)
        yield address, "external"
        return
    from wattmesh.broker.mosquitto import find_mosquitto, private_mosquitto

    if find_mosquitto() is not None:
        async with private_mosquitto(workdir / "mosquitto") as address:
            yield address, "mosquitto"
    else:
        from wattmesh.broker.embedded import embedded_broker

        async with embedded_broker() as address:
            yield address, "amqtt"


def open_store(config: SimulationConfig) -> tuple[LedgerStore, str]:
    url = config.db_url
    if url is None:
        path = config.workdir / "ledger.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    store = LedgerStore(url)
    if store.size() > 0:
        store.close()
        raise ConfigError(f"the database {url} already holds a ledger; give an empty one")
    return store, url


async def run_simulation(
    config: SimulationConfig, *, progress: Progress | None = None, watcher: Watcher | None = None
) -> dict[str, Any]:
    """Run the neighbourhood and return the report (see docs/ARCHITECTURE.md);
    ``watcher`` (e.g. the dashboard) learns where it runs and gets the report first."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    scenario = build_planned(
        config.plan(), days=config.days, seed=config.seed, history_days=config.history_days
    )
    faults: tuple[InjectedFault, ...] = ()
    if config.inject_faults > 0:
        faults = plan_faults(scenario, rate=config.inject_faults, seed=config.seed)
        scenario = inject_profiles(scenario, faults)
    store, db_url = open_store(config)
    operator, forecaster = (
        simulation_key(config.seed, name).verifying for name in ("operator", "forecaster")
    )
    (config.workdir / OPERATOR_KEY_FILE).write_bytes(operator.pem())  # for `ledger verify`
    try:
        async with open_broker(config.broker, config.workdir) as (address, broker_kind):
            if watcher is not None:
                watcher.started(RunSite(db_url, address, config.market_id, operator, forecaster))
            outcomes, ledger, models, meters = await _run(
                config, scenario, store, address, progress, faults=faults
            )
            verified = verify_ledger(store, operator)  # the key this run made: anchored
            extra: dict[str, Any] = {}
            if config.inject_faults > 0:
                found = detections_from_log(store, interval_s=scenario.interval_s)
                extra["faults"] = score_faults(
                    faults, found, interval_s=scenario.interval_s, rate=config.inject_faults
                )
            report = build_report(
                config=config,
                scenario=scenario,
                outcomes=outcomes,
                ledger=ledger,
                verified=verified.ok,
                batteries=battery_balances(scenario, meters),
                undeclared_wh=undeclared_export_wh(faults, scenario),
                extra={
                    "broker": broker_kind,
                    "db": db_url,
                    "verify_problem": verified.problem,
                    "operator_key_id": verified.key_id,
                    "forecast_models": dict(sorted(models.items())),
                    **extra,
                },
            )
            if watcher is not None:
                await watcher.finished(report)  # the broker runs on meanwhile
        return report
    finally:
        store.close()


def _transport(address: BrokerAddress, client_id: str, **kwargs: Any) -> TransportConfig:
    return TransportConfig(address=address, client_id=client_id, **kwargs)


@dataclass(frozen=True)
class _Keys:
    """The run's keys, derived from its seed: the operator's, the forecaster's (the
    agents trust only it) and each household's."""

    operator: SigningKey
    forecaster: SigningKey
    households: dict[str, SigningKey]

    @classmethod
    def of(cls, config: SimulationConfig, scenario: Scenario) -> _Keys:
        return cls(
            operator=simulation_key(config.seed, "operator"),
            forecaster=simulation_key(config.seed, "forecaster"),
            households={
                hh.spec.agent_id: simulation_key(config.seed, hh.spec.agent_id)
                for hh in scenario.households
            },
        )

    def registry(self) -> dict[str, VerifyingKey]:
        return {a: k.verifying for a, k in self.households.items()}


async def _run(
    config: SimulationConfig,
    scenario: Scenario,
    store: LedgerStore,
    address: BrokerAddress,
    progress: Progress | None,
    *,
    faults: tuple[InjectedFault, ...] = (),
) -> tuple[list[IntervalOutcome], Ledger, Counter[str], dict[str, BatteryMeter]]:
    topics = Topics(config.market_id)
    first = int(scenario.interval_start(scenario.history_intervals).timestamp())
    keys = _Keys.of(config, scenario)
    ledger = Ledger(
        store,
        market_id=config.market_id,
        operator_key=keys.operator,
        mechanism=config.mechanism,
        metering=MeteringConfig(max_power_w=config.plan().max_power_w),
        tariffs=config.tariffs or TariffSchedule.flat(config.tariff),
    )
    ledger.register(keys.registry(), interval=first)

    async with contextlib.AsyncExitStack() as stack:
        service, ledger_transport = await _start_ledger(
            stack, config=config, interval_s=scenario.interval_s, address=address,
            topics=topics, ledger=ledger, key=keys.operator,
            forecaster_key=keys.forecaster.verifying,
        )  # fmt: skip
        forecaster, forecast_transport = await _start_forecaster(
            stack, config=config, interval_s=scenario.interval_s, address=address,
            topics=topics, keys=keys,
        )  # fmt: skip
        agents: list[HouseholdAgent] = []
        statuses: list[StatusSigner] = []
        battery_meters: dict[str, BatteryMeter] = {}
        for hh in scenario.households:
            agent, status, battery = await _start_household(
                stack, config=config, scenario=scenario, hh=hh, address=address,
                topics=topics, keys=keys, forecaster=forecaster,
                faults=[f for f in faults if f.agent == hh.spec.agent_id],
            )  # fmt: skip
            agents.append(agent)
            statuses.append(status)
            if battery is not None:
                battery_meters[hh.spec.agent_id] = battery
        all_transports = [ledger_transport, forecast_transport, *(a.transport for a in agents)]
        await asyncio.gather(*(t.wait_connected() for t in all_transports))
        outcomes = await _trade(
            config=config, scenario=scenario, service=service, forecaster=forecaster,
            agents=agents, statuses=statuses, first=first, progress=progress,
        )  # fmt: skip
    return outcomes, ledger, forecaster.models, battery_meters


async def _start_ledger(
    stack: contextlib.AsyncExitStack,
    *,
    config: SimulationConfig,
    interval_s: int,
    address: BrokerAddress,
    topics: Topics,
    ledger: Ledger,
    key: SigningKey,
    forecaster_key: VerifyingKey,
) -> tuple[LedgerService, Transport]:
    """The ledger's connection and service, connected, the broker's retained state cleared."""
    ledger_transport = await stack.enter_async_context(
        Transport(
            _transport(address, f"{config.market_id}-ledger", inbound_queue_size=1_000_000),
            subscriptions=ledger_subscriptions(topics),
        )
    )
    service = LedgerService(
        ledger,
        OperatorConfig(topics, interval_s=interval_s, gate_timeout_s=config.gate_timeout_s),
        key=key,
        transport=ledger_transport,
        forecaster_key=forecaster_key,
    )
    await ledger_transport.wait_connected()
    await service.clear_retained()  # a reused broker may hold an earlier run's state
    return service, ledger_transport


async def _start_forecaster(
    stack: contextlib.AsyncExitStack,
    *,
    config: SimulationConfig,
    interval_s: int,
    address: BrokerAddress,
    topics: Topics,
    keys: _Keys,
) -> tuple[ForecastService, Transport]:
    forecast_transport = await stack.enter_async_context(
        Transport(
            _transport(address, f"{config.market_id}-forecaster", inbound_queue_size=1_000_000),
            subscriptions=[(topics.all_readings, 1)],
        )
    )
    forecaster = ForecastService(
        ForecasterConfig(topics, interval_s=interval_s, model=config.forecaster),
        key=keys.forecaster,
        transport=forecast_transport,
        registry=keys.registry(),
    )
    stack.callback(forecaster.close)
    return forecaster, forecast_transport


async def _start_household(
    stack: contextlib.AsyncExitStack,
    *,
    config: SimulationConfig,
    scenario: Scenario,
    hh: HouseholdProfile,
    address: BrokerAddress,
    topics: Topics,
    keys: _Keys,
    forecaster: ForecastService,
    faults: list[InjectedFault],
) -> tuple[HouseholdAgent, StatusSigner, BatteryMeter | None]:
    """One household: its history given to the forecaster, its connection (with its
    signed status), its meter (with a battery if it has one) and its agent."""
    agent_id = hh.spec.agent_id
    history_start = int(scenario.start.timestamp())
    history = scenario.history_intervals
    forecaster.load_history(
        agent_id,
        start=history_start,
        demand_wh=hh.demand_wh[:history],
        pv_wh=hh.pv_wh[:history],
    )
    clock = MarketClock(history_start)
    agent_config = AgentConfig(
        agent_id=agent_id,
        topics=topics,
        operator_key=keys.operator.verifying,
        forecaster_key=keys.forecaster.verifying,
        forecast_timeout_s=config.gate_timeout_s,
        max_power_w=config.plan().max_power_w.get(agent_id, DEFAULT_MAX_POWER_W),
    )
    # signed online/offline (its last will), as a real agent publishes
    status = StatusSigner(keys.households[agent_id], topics, agent_id)
    transport = await stack.enter_async_context(
        agent_transport(
            agent_config, _transport(address, f"{config.market_id}-{agent_id}"), status=status
        )
    )
    meter: SimulatedMeter | BatteryMeter = SimulatedMeter(
        start=history_start,
        interval_s=scenario.interval_s,
        demand_wh=hh.demand_wh,
        pv_wh=hh.pv_wh,
        clock=clock,
    )
    battery = None
    if hh.spec.battery is not None:  # it runs (self-consumption) from history start
        meter = battery = BatteryMeter(
            start=history_start,
            interval_s=scenario.interval_s,
            demand_wh=hh.demand_wh,
            pv_wh=hh.pv_wh,
            battery=hh.spec.battery,
            clock=clock,
        )
    read_by_agent: Meter = meter
    if any(f.kind in METER_KINDS for f in faults):
        read_by_agent = FaultyMeter(meter, faults, interval_s=scenario.interval_s)
    agent = HouseholdAgent(
        agent_config,
        key=keys.households[agent_id],
        transport=transport,
        meter=read_by_agent,
        sequence=MemorySequence(),
        market_clock=clock,
        battery=battery,
    )
    return agent, status, battery


async def _trade(
    *,
    config: SimulationConfig,
    scenario: Scenario,
    service: LedgerService,
    forecaster: ForecastService,
    agents: list[HouseholdAgent],
    statuses: list[StatusSigner],
    first: int,
    progress: Progress | None,
) -> list[IntervalOutcome]:
    """Run every simulated interval and the closing round, the services and agents
    running beside; their tasks are cancelled and awaited whatever happens."""
    interval_s, intervals = scenario.interval_s, scenario.simulated_intervals
    tasks = [
        asyncio.create_task(service.run_ingest(), name="ledger-ingest"),
        asyncio.create_task(forecaster.run(), name="forecaster"),
    ]
    agent_tasks = [asyncio.create_task(a.run(), name=a.config.agent_id) for a in agents]
    outcomes: list[IntervalOutcome] = []
    ledger = service.ledger
    watch = LogAnomalies(ledger.store, interval_s=interval_s, band=forecaster.demand_band)
    counted = Counter(ledger.rejections), ledger.redeliveries  # at the previous summary
    try:
        for index in range(intervals):
            start = first + index * interval_s
            outcome = await service.run_interval(start, config.tariff_at(start))
            outcomes.append(outcome)
            now = Counter(ledger.rejections), ledger.redeliveries
            await service.publish_summary(
                outcome,
                households=len(ledger.keys),
                rejections={str(r): n for r, n in (now[0] - counted[0]).items()},
                redeliveries=now[1] - counted[1],
            )
            counted = now
            day = 86_400 // interval_s
            if (index + 1) % day == 0 or index + 1 == intervals:
                day_start = first + (index // day) * day * interval_s
                await publish_flags(
                    service, forecaster, watch.new_flags(day_start=day_start), config.gate_timeout_s
                )
            if progress is not None:
                progress(index + 1, intervals)
        end = first + intervals * interval_s
        closing = await service.run_interval(end, config.tariff_at(end), trading=False)
        outcomes.append(closing)
        await asyncio.wait_for(asyncio.gather(*agent_tasks), config.gate_timeout_s)
        # A clean stop, as a real agent's (agents.lifecycle): the signed offline status.
        await asyncio.gather(
            *(a.go_offline(s, config.gate_timeout_s) for a, s in zip(agents, statuses, strict=True))
        )
        await service.clear_retained()
    finally:
        for task in [*tasks, *agent_tasks]:
            task.cancel()
        await asyncio.gather(*tasks, *agent_tasks, return_exceptions=True)
    return outcomes
