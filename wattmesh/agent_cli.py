"""``wattmesh agent --config agent.toml``: run one household agent.

Imports only the agent's dependencies (the wire contract and aiomqtt). Configuration
is TOML; secrets are read from files named in it, never from the command line::

    agent_id = "h001"
    market_id = "m1"
    broker = "mqtt://127.0.0.1:1883"
    key_file = "keys/private_key.pem"      # mode 0600
    state_dir = "state"                     # the outbox (and sequence number) across restarts
    operator_key_file = "operator.pem"      # optional: only trust signed announcements

    [meter]
    kind = "replay"                         # the simulated meter, replaying a profile
    file = "profile.json"                   # {"start": epoch_s, "interval_s": 900,
                                            #  "demand_wh": [...], "pv_wh": [...]}
"""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.agent import AgentConfig
from agents.lifecycle import serve_household
from agents.meter import SimulatedMeter, system_clock
from broker.errors import ConfigError
from broker.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from broker.topics import Topics, check_segment
from broker.transport import TransportConfig, parse_broker_url

_KEYS = {"agent_id", "market_id", "broker", "key_file", "state_dir", "operator_key_file", "meter"}


@dataclass(frozen=True)
class AgentFileConfig:
    agent: AgentConfig
    transport: TransportConfig
    key: SigningKey
    state_dir: Path
    meter_file: Path


def load_agent_config(path: Path) -> AgentFileConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    base = path.parent

    def need(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: '{key}' must be a non-empty string")
        return value

    agent_id = check_segment(need("agent_id"), "agent_id")
    topics = Topics(check_segment(need("market_id"), "market_id"))
    try:
        address = parse_broker_url(need("broker"))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    operator: VerifyingKey | None = None
    if "operator_key_file" in raw:
        operator = load_verifying_key(base / need("operator_key_file"))
    meter: Any = raw.get("meter")
    if not isinstance(meter, dict) or meter.get("kind") != "replay" or "file" not in meter:
        raise ConfigError(f'{path}: [meter] needs kind = "replay" and file = "..."')
    return AgentFileConfig(
        agent=AgentConfig(agent_id=agent_id, topics=topics, operator_key=operator),
        transport=TransportConfig(address=address, client_id=f"{topics.market_id}-{agent_id}"),
        key=load_signing_key(base / need("key_file")),
        state_dir=base / need("state_dir"),
        meter_file=base / str(meter["file"]),
    )


def _replay_meter(path: Path) -> SimulatedMeter:
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
        return SimulatedMeter(
            start=int(profile["start"]),
            interval_s=int(profile["interval_s"]),
            demand_wh=[int(v) for v in profile["demand_wh"]],
            pv_wh=[int(v) for v in profile["pv_wh"]],
            clock=system_clock,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot use meter profile {path}: {exc}") from exc


async def _run(config: AgentFileConfig) -> None:
    await serve_household(
        config.agent,
        config.transport,
        key=config.key,
        meter=_replay_meter(config.meter_file),
        state_dir=config.state_dir,
    )


def run_agent_command(path: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_run(load_agent_config(path)))
    return 0
