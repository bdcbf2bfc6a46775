"""The sections of ``agent.toml`` as frozen dataclasses: the shape pydantic validates.

This module imports neither pydantic nor ``annotated_types``. Each constrained field
is ``Annotated`` with a :class:`Check` (bounds, length, pattern), which pydantic
turns into its own constraints through the ``__get_pydantic_core_schema__`` hook;
the shared field types below carry them. Sections derive from :class:`Section`, whose
``__pydantic_config__`` makes pydantic refuse unknown keys;
:mod:`wattmesh.config.agent_validate` runs the validation. ``wattmesh agent`` validates in a
short-lived child process and receives the sections back as JSON
(:func:`sections_from_json`), so pydantic (about 9 MB resident, see BENCHMARKS.md)
never stays in the long-running agent. Times in seconds (``_s``), capacities in
entries, energy in Wh, power in W. The format is documented in
:mod:`wattmesh.config.agent_config` and docs/raspberry-pi.md.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Final, Literal

from wattmesh.broker.connection import DEFAULT_MAX_POWER_W, MAX_POWER_LIMIT_W
from wattmesh.broker.topics import DEFAULT_PREFIX

# Light on purpose (the validating child imports this): the defaults below repeat
# agents.outbox.DEFAULT_CAPACITY, agents.publisher.DEFAULT_COMMIT_INTERVAL_S,
# agents.lifecycle.DEFAULT_FLUSH_TIMEOUT_S, agents.publisher.DEFAULT_MAX_IN_FLIGHT,
# agents.clock.DEFAULT_MAX_DRIFT_S and agents.battery.PERMILLE, and P1Version is
# spelled as its values, instead of importing the agent (aiomqtt, dsmr-parser);
# tests/test_agent_config.py checks that they agree.
DEFAULT_CAPACITY: Final = 100_000
DEFAULT_COMMIT_INTERVAL_S: Final = 1.0
DEFAULT_FLUSH_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_IN_FLIGHT: Final = 64
DEFAULT_MAX_DRIFT_S: Final = 300
PERMILLE: Final = 1000
P1VersionName = Literal["4", "5", "5B", "5L", "5S"]  # agents.metering.p1.P1Version


@dataclass(frozen=True)
class Check:
    """Constraints of one field, in pydantic-core's words (inclusive bounds, ``gt``
    exclusive); pydantic applies them with its usual messages."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    pattern: str | None = None

    def __get_pydantic_core_schema__(
        self, source: object, handler: Callable[[object], Mapping[str, Any]]
    ) -> dict[str, Any]:
        constraints = {k: v for k, v in vars(self).items() if v is not None}
        return {**handler(source), **constraints}


def between(low: float, high: float) -> Check:
    """``low <= value <= high``."""
    return Check(ge=low, le=high)


_MAX_WH: Final = 10**9  # 1 GWh: far above any household battery, far below overflow
_MAX_W: Final = 10**7

NonEmpty = Annotated[str, Check(min_length=1)]
Identifier = Annotated[str, Check(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Port = Annotated[int, between(1, 65535)]
Baud = Annotated[int, between(300, 4_000_000)]
Unit = Annotated[int, between(0, 247)]
PeriodSeconds = Annotated[float, between(1.0, 86_400.0)]  # how often something is done
TimeoutSeconds = Annotated[float, between(0.0, 300.0)]
EnergyWh = Annotated[int, between(0, _MAX_WH)]
PowerW = Annotated[int, between(0, _MAX_W)]


class Section:
    """A table of ``agent.toml``: unknown keys are errors."""

    __pydantic_config__: ClassVar[dict[str, str]] = {"extra": "forbid"}  # a ConfigDict


@dataclass(frozen=True)
class TlsSection(Section):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class MqttSection(Section):
    username: NonEmpty | None = None
    password_file: str | None = None
    client_id: NonEmpty | None = None
    keepalive_s: Annotated[int, between(1, 3600)] = 30
    tls: TlsSection | None = None


@dataclass(frozen=True)
class ReplaySection(Section):
    kind: Literal["replay"]
    file: str


@dataclass(frozen=True)
class P1SerialSection(Section):
    kind: Literal["p1-serial"]
    device: NonEmpty
    version: P1VersionName = "5"
    baud: Baud | None = None


@dataclass(frozen=True)
class P1TcpSection(Section):
    kind: Literal["p1-tcp"]
    host: NonEmpty
    port: Port
    version: P1VersionName = "5"


@dataclass(frozen=True)
class P1FileSection(Section):
    kind: Literal["p1-file"]
    path: NonEmpty
    version: P1VersionName = "5"


@dataclass(frozen=True)
class ModbusTcpSection(Section):
    kind: Literal["modbus-tcp"]
    host: NonEmpty
    map: NonEmpty
    port: Port = 502
    unit: Unit = 1


@dataclass(frozen=True)
class ModbusRtuSection(Section):
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
class HomeAssistantSection(Section):
    enabled: bool = False
    prefix: Annotated[str, Check(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "homeassistant"
    currency: Annotated[str, Check(pattern=r"^[A-Z]{3}$")] = "EUR"
    state_interval_s: Annotated[float, between(1.0, 3600.0)] = 10.0


@dataclass(frozen=True)
class OutboxSection(Section):
    capacity: Annotated[int, between(1, 10_000_000)] = DEFAULT_CAPACITY
    commit_interval_s: Annotated[float, between(0.0, 60.0)] = DEFAULT_COMMIT_INTERVAL_S
    flush_timeout_s: TimeoutSeconds = DEFAULT_FLUSH_TIMEOUT_S
    max_in_flight: Annotated[int, between(1, 1000)] = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True)
class HealthSection(Section):
    max_clock_drift_s: Annotated[int, between(1, 86_400)] = DEFAULT_MAX_DRIFT_S
    diagnostics_interval_s: PeriodSeconds = 60.0


@dataclass(frozen=True)
class BatterySection(Section):
    """A home battery (``agents.battery.BatterySpec``) and what drives it.

    ``round_trip_permille`` is the exact share (per mille, 1..1000) of the AC energy
    put in that can be taken out again. ``initial_soc_wh`` defaults to
    ``min_soc_wh``. ``controller = "simulated"`` runs the battery in the replayed
    household (``agents.battery_meter.BatteryMeter``: needs ``meter.kind = "replay"``).
    """

    controller: Literal["simulated"]
    capacity_wh: Annotated[int, between(1, _MAX_WH)]
    max_charge_w: PowerW
    max_discharge_w: PowerW
    round_trip_permille: Annotated[int, between(1, PERMILLE)] = 900
    min_soc_wh: EnergyWh = 0
    initial_soc_wh: EnergyWh | None = None


@dataclass(frozen=True)
class AgentSection(Section):
    """The whole file. ``meter`` is validated by its ``kind`` (see agent_validate)."""

    agent_id: Identifier
    market_id: Identifier
    broker: str
    key_file: str
    state_dir: str
    meter: MeterSection
    topic_prefix: str = DEFAULT_PREFIX
    operator_key_file: str | None = None
    forecaster_key_file: str | None = None
    max_power_w: Annotated[int, between(1, MAX_POWER_LIMIT_W)] = DEFAULT_MAX_POWER_W
    forecast_timeout_s: Annotated[float, Check(gt=0)] = 60.0
    mqtt: MqttSection = field(default_factory=MqttSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    health: HealthSection = field(default_factory=HealthSection)
    battery: BatterySection | None = None


def sections_from_json(data: Mapping[str, Any]) -> AgentSection:
    """The sections again from ``dataclasses.asdict`` of validated ones (as JSON).

    No validation: only for what :mod:`wattmesh.config.agent_validate` has validated.
    """
    mqtt, meter, battery = dict(data["mqtt"]), data["meter"], data["battery"]
    tls = mqtt.pop("tls")
    return AgentSection(
        **{
            **data,
            "meter": METER_KINDS[meter["kind"]](**meter),
            "mqtt": MqttSection(**mqtt, tls=None if tls is None else TlsSection(**tls)),
            "homeassistant": HomeAssistantSection(**data["homeassistant"]),
            "outbox": OutboxSection(**data["outbox"]),
            "health": HealthSection(**data["health"]),
            "battery": None if battery is None else BatterySection(**battery),
        }
    )
