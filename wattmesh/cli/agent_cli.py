"""``wattmesh agent --config agent.toml [--validate-config]``: run one household agent.

Imports only the agent's dependencies (the wire contract, aiomqtt, dsmr-parser;
pymodbus for a Modbus meter). pydantic validates the file in a short-lived child
process (:mod:`wattmesh.config.agent_validate_child`), so it never stays in the agent. The
configuration format is documented in :mod:`wattmesh.config.agent_config` and
docs/raspberry-pi.md. A replay meter reads a JSON
profile ``{"start": epoch_s, "interval_s": 900, "demand_wh": [...], "pv_wh": [...]}``;
with a simulated ``[battery]`` the household replays it with that battery behind its
grid meter (:class:`~agents.battery_meter.BatteryMeter`), and the agent orders with the
battery strategy (:mod:`agents._battery_strategy`), see docs/battery.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent's own modules load lazily: see run_agent_command
    from wattmesh.agents.battery import BatteryController
    from wattmesh.agents.battery_meter import BatteryMeter
    from wattmesh.agents.meter import Meter, SimulatedMeter
    from wattmesh.config.agent_config import AgentFileConfig, BatterySettings

EXIT_INVALID = 1


def _replay_meter(path: Path, battery: BatterySettings | None) -> SimulatedMeter | BatteryMeter:
    """The replayed household; with a (simulated) battery, the battery acts in it."""
    from wattmesh.agents.battery_meter import BatteryMeter
    from wattmesh.agents.meter import SimulatedMeter, system_clock
    from wattmesh.broker.errors import ConfigError

    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
        start, interval_s = int(profile["start"]), int(profile["interval_s"])
        demand_wh = [int(v) for v in profile["demand_wh"]]
        pv_wh = [int(v) for v in profile["pv_wh"]]
        if battery is not None:
            return BatteryMeter(
                start=start,
                interval_s=interval_s,
                demand_wh=demand_wh,
                pv_wh=pv_wh,
                battery=battery.spec,
                clock=system_clock,
                soc_wh=battery.initial_soc_wh,
            )
        return SimulatedMeter(
            start=start, interval_s=interval_s, demand_wh=demand_wh, pv_wh=pv_wh, clock=system_clock
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot use meter profile {path}: {exc}") from exc


@contextlib.asynccontextmanager
async def _household(
    config: AgentFileConfig,
) -> AsyncIterator[tuple[Meter, BatteryController | None]]:
    """The meter, and the battery controller if ``[battery]`` is configured."""
    from wattmesh.agents.battery_meter import BatteryMeter
    from wattmesh.agents.metering.open import open_meter
    from wattmesh.config.agent_config import ReplaySpec

    if isinstance(config.meter, ReplaySpec):
        meter = _replay_meter(config.meter.path, config.battery)
        yield meter, meter if isinstance(meter, BatteryMeter) else None
        return
    async with open_meter(config.meter, base=config.base) as real:
        yield real, None


def _version() -> str:
    # Only for the Home Assistant bridge: importlib.metadata costs memory otherwise.
    from importlib import metadata

    try:
        return metadata.version("wattmesh")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _run(config: AgentFileConfig) -> None:
    from wattmesh.agents.lifecycle import serve_household

    async with contextlib.AsyncExitStack() as stack:
        meter, battery = await stack.enter_async_context(_household(config))
        companions = []
        if config.homeassistant is not None:
            from wattmesh.agents.ha_bridge import HomeAssistantBridge

            bridge = HomeAssistantBridge(
                config.homeassistant, config.agent, config.transport, meter, sw_version=_version()
            )
            await stack.enter_async_context(bridge.transport)
            companions.append(bridge)
        await serve_household(
            config.agent,
            config.transport,
            key=config.key,
            meter=meter,
            state_dir=config.state_dir,
            capacity=config.outbox.capacity,
            commit_interval_s=config.outbox.commit_interval_s,
            flush_timeout_s=config.outbox.flush_timeout_s,
            max_in_flight=config.outbox.max_in_flight,
            companions=companions,
            battery=battery,
        )


def run_agent_command(path: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from wattmesh.config.agent_validate_child import ValidationChild

    # pydantic validates in a child process (never loaded here: about 9 MB), started
    # first so that it runs while this process imports the agent.
    child = ValidationChild(path)
    import asyncio

    from wattmesh.broker.errors import ConfigError
    from wattmesh.config.agent_config import load_agent_config_isolated

    config = load_agent_config_isolated(path, child)
    try:  # before anything starts: a bad state_dir is one line (exit 2), no traceback
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{path}: state_dir: cannot create {config.state_dir}: {exc.strerror}"
        ) from exc
    asyncio.run(_run(config))
    return 0


def validate_config_command(path: Path) -> int:
    """Check ``path`` without connecting anywhere: 0 if valid, 1 listing every problem."""
    from wattmesh.config.agent_config import check_agent_config

    config, problems = check_agent_config(path)
    if config is None:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{path}: ok (agent {config.agent.agent_id}, market {config.agent.topics.market_id})")
    return 0
