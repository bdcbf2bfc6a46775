"""The sections of ``agent.toml`` as frozen dataclasses: the shape pydantic validates.

This module does not import pydantic. The constraints are ``annotated_types``
metadata, which pydantic enforces, and ``__pydantic_config__`` makes pydantic refuse
unknown keys; :mod:`wattmesh.agent_validate` runs the validation. ``wattmesh agent``
validates in a short-lived child process and receives these plain values back, so
pydantic (about 9 MB resident, see BENCHMARKS.md) never stays in the long-running
agent. Times in seconds (``_s``), capacities in entries. The format is documented in
:mod:`wattmesh.agent_config` and docs/raspberry-pi.md.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Final, Literal

from annotated_types import Ge, Gt, Le, MinLen

from broker.topics import DEFAULT_PREFIX

# Light on purpose (the validating child imports this): the defaults below repeat
# agents.outbox.DEFAULT_CAPACITY, agents.publisher.DEFAULT_COMMIT_INTERVAL_S,
# agents.lifecycle.DEFAULT_FLUSH_TIMEOUT_S, agents.publisher.DEFAULT_MAX_IN_FLIGHT and
# agents.clock.DEFAULT_MAX_DRIFT_S, and
# P1Version is spelled as its values, instead of importing the agent (aiomqtt,
# dsmr-parser); tests/test_agent_config.py checks that they agree.
DEFAULT_CAPACITY: Final = 100_000
DEFAULT_COMMIT_INTERVAL_S: Final = 1.0
DEFAULT_FLUSH_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_IN_FLIGHT: Final = 64
DEFAULT_MAX_DRIFT_S: Final = 300
P1VersionName = Literal["4", "5", "5B", "5L", "5S"]  # agents.metering.p1.P1Version

_FORBID: Final = {"extra": "forbid"}  # pydantic's ConfigDict, as a plain dict

NonEmpty = Annotated[str, MinLen(1)]
Port = Annotated[int, Ge(1), Le(65535)]
Baud = Annotated[int, Ge(300), Le(4_000_000)]
Unit = Annotated[int, Ge(0), Le(247)]

# Checked by wattmesh.agent_validate with pydantic's wording (annotated_types has no
# pattern constraint): TOML path -> pattern.
PATTERNS: Final = {
    "agent_id": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
    "market_id": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
    "homeassistant.prefix": re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"),
    "homeassistant.currency": re.compile(r"^[A-Z]{3}$"),
}


@dataclass(frozen=True)
class TlsSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class MqttSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    username: NonEmpty | None = None
    password_file: str | None = None
    client_id: NonEmpty | None = None
    keepalive_s: Annotated[int, Ge(1), Le(3600)] = 30
    tls: TlsSection | None = None


@dataclass(frozen=True)
class ReplaySection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["replay"]
    file: str


@dataclass(frozen=True)
class P1SerialSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["p1-serial"]
    device: NonEmpty
    version: P1VersionName = "5"
    baud: Baud | None = None


@dataclass(frozen=True)
class P1TcpSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["p1-tcp"]
    host: NonEmpty
    port: Port
    version: P1VersionName = "5"


@dataclass(frozen=True)
class P1FileSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["p1-file"]
    path: NonEmpty
    version: P1VersionName = "5"


@dataclass(frozen=True)
class ModbusTcpSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["modbus-tcp"]
    host: NonEmpty
    map: NonEmpty
    port: Port = 502
    unit: Unit = 1


@dataclass(frozen=True)
class ModbusRtuSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    kind: Literal["modbus-rtu"]
    device: NonEmpty
    map: NonEmpty
    unit: Unit = 1
    baud: Baud = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


MeterSection = (
    ReplaySection
    | P1SerialSection
    | P1TcpSection
    | P1FileSection
    | ModbusTcpSection
    | ModbusRtuSection
)
METER_KINDS: Final[dict[str, type[MeterSection]]] = {
    "replay": ReplaySection,
    "p1-serial": P1SerialSection,
    "p1-tcp": P1TcpSection,
    "p1-file": P1FileSection,
    "modbus-tcp": ModbusTcpSection,
    "modbus-rtu": ModbusRtuSection,
}


@dataclass(frozen=True)
class HomeAssistantSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    enabled: bool = False
    prefix: str = "homeassistant"
    currency: str = "EUR"
    state_interval_s: Annotated[float, Ge(1.0), Le(3600.0)] = 10.0


@dataclass(frozen=True)
class OutboxSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    capacity: Annotated[int, Ge(1), Le(10_000_000)] = DEFAULT_CAPACITY
    commit_interval_s: Annotated[float, Ge(0.0), Le(60.0)] = DEFAULT_COMMIT_INTERVAL_S
    flush_timeout_s: Annotated[float, Ge(0.0), Le(300.0)] = DEFAULT_FLUSH_TIMEOUT_S
    max_in_flight: Annotated[int, Ge(1), Le(1000)] = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True)
class HealthSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    max_clock_drift_s: Annotated[int, Ge(1), Le(86_400)] = DEFAULT_MAX_DRIFT_S
    diagnostics_interval_s: Annotated[float, Ge(1.0), Le(86_400.0)] = 60.0


@dataclass(frozen=True)
class AgentSection:
    """The whole file. ``meter`` is validated by its ``kind`` (see agent_validate)."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    agent_id: str
    market_id: str
    broker: str
    key_file: str
    state_dir: str
    meter: MeterSection
    topic_prefix: str = DEFAULT_PREFIX
    operator_key_file: str | None = None
    forecast_timeout_s: Annotated[float, Gt(0)] = 60.0
    mqtt: MqttSection = field(default_factory=MqttSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    health: HealthSection = field(default_factory=HealthSection)
