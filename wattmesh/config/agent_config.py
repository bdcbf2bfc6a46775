"""``agent.toml``: the household agent's configuration, validated with pydantic.

Unknown keys are errors; every problem is reported with its TOML path. The sections
are plain dataclasses (:mod:`wattmesh.config.agent_schema`) that pydantic validates
(:mod:`wattmesh.config.agent_validate`); the running agent does that in a short-lived child
process (:func:`check_agent_config_isolated`) so pydantic never stays resident. Secrets
(the signing key, the MQTT password, a TLS client key) are read from files named
here, never from the command line or the TOML itself; the signing key and the
password file must not be readable by group or others (chmod 600). Relative paths
are relative to the configuration file's folder. See docs/raspberry-pi.md::

    agent_id = "h001"
    market_id = "m1"
    broker = "mqtts://broker.example.net"      # mqtt://host[:1883] or mqtts://host[:8883]
    key_file = "keys/private_key.pem"           # mode 0600
    state_dir = "state"                         # sequence numbers across restarts
    operator_key_file = "keys/operator.pem"     # optional: trust only signed announcements
    forecaster_key_file = "keys/forecaster.pem" # optional: without it, the agent's own forecast
    max_power_w = 17250                         # the connection's limit (W); the default

    [mqtt]                                      # optional
    username = "h001"
    password_file = "mqtt.password"             # first line is the password; mode 0600
    [mqtt.tls]                                  # optional, only with mqtts://
    ca_file = "ca.pem"                          # default: the system's CAs
    cert_file = "client.crt"                    # optional client certificate ...
    key_file = "client.key"                     # ... and its key

    [meter]                                     # one of the kinds below
    kind = "p1-serial"                          # p1-serial | p1-tcp | p1-file |
    device = "/dev/ttyUSB0"                     # modbus-tcp | modbus-rtu | replay

    [homeassistant]                             # optional; off by default
    enabled = true
    prefix = "homeassistant"

    [outbox]                                    # optional; these are the defaults
    capacity = 100000                           # entries kept at most (oldest dropped)
    commit_interval_s = 1.0                     # at most one fsync per interval (s)
    flush_timeout_s = 5.0                       # on SIGTERM: wait for the broker (s)
    max_in_flight = 64                          # published, not yet acknowledged, at most

    [health]                                    # optional; these are the defaults
    max_clock_drift_s = 300                     # refuse orders beyond this drift (s)
    diagnostics_interval_s = 60.0               # retained diagnostics at most this often (s)

    [battery]                                   # optional: a home battery (docs/battery.md)
    controller = "simulated"                    # in the replayed household (meter kind replay)
    capacity_wh = 10000
    max_charge_w = 5000
    max_discharge_w = 5000
    round_trip_permille = 900                   # exact share of the energy put in, per mille
    min_soc_wh = 0                              # optional; default 0
    initial_soc_wh = 2000                       # optional; default min_soc_wh
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wattmesh.agents.agent import AgentConfig
from wattmesh.agents.battery import BatterySpec
from wattmesh.agents.homeassistant import HomeAssistantConfig
from wattmesh.agents.lifecycle import OutboxSettings
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.p1 import P1Version
from wattmesh.agents.metering.spec import (
    MeterSpec,
    ModbusRtuSpec,
    ModbusTcpSpec,
    P1FileSpec,
    P1SerialSpec,
    P1TcpSpec,
)
from wattmesh.broker.errors import ConfigError, WattmeshError
from wattmesh.broker.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from wattmesh.broker.topics import Topics, check_segment
from wattmesh.broker.transport import BrokerAddress, TlsConfig, TransportConfig, parse_broker_url
from wattmesh.config.agent_schema import (
    AgentSection,
    BatterySection,
    ModbusRtuSection,
    ModbusTcpSection,
    P1FileSection,
    P1SerialSection,
    P1TcpSection,
    ReplaySection,
    TlsSection,
)
from wattmesh.config.agent_validate_child import ValidationChild

_MQTTS_PORT = 8883


@dataclass(frozen=True)
class ReplaySpec:
    """The simulated meter replaying a JSON profile (see wattmesh/cli/agent_cli.py)."""

    path: Path


@dataclass(frozen=True)
class BatterySettings:
    """A battery of ``agent.toml``: its ratings, its SoC at start and its controller."""

    spec: BatterySpec
    initial_soc_wh: int
    controller: str  # "simulated": agents.battery_meter.BatteryMeter on the replay profile


@dataclass(frozen=True)
class AgentFileConfig:
    agent: AgentConfig
    transport: TransportConfig
    key: SigningKey
    state_dir: Path
    meter: MeterSpec | ReplaySpec
    base: Path  # the configuration file's folder (resolves the meter's relative paths)
    homeassistant: HomeAssistantConfig | None
    outbox: OutboxSettings
    battery: BatterySettings | None = None


class _Problems:
    """Collects every problem, each prefixed with its TOML path."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _secret_file(path: Path, where: str, problems: _Problems) -> str | None:
    """The first line of a secret file that only its owner may read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.add(
                where, f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        problems.add(where, f"cannot read {path}: {exc.strerror}")
        return None
    if not lines or not lines[0]:
        problems.add(where, f"{path} is empty")
        return None
    return lines[0]


def _readable(path: Path, where: str, problems: _Problems) -> Path:
    if not path.is_file():
        problems.add(where, f"{path} does not exist or is not a file")
    return path


def _meter_spec(model: AgentSection, base: Path, problems: _Problems) -> MeterSpec | ReplaySpec:
    meter = model.meter
    match meter:
        case ReplaySection():
            return ReplaySpec(_readable(base / meter.file, "meter.file", problems))
        case P1SerialSection():
            return P1SerialSpec(meter.device, P1Version(meter.version), meter.baud)
        case P1TcpSection():
            return P1TcpSpec(meter.host, meter.port, P1Version(meter.version))
        case P1FileSection():
            _readable(base / meter.path, "meter.path", problems)
            return P1FileSpec(meter.path, P1Version(meter.version))
        case ModbusTcpSection() | ModbusRtuSection():
            _check_map(meter.map, base, problems)
            try:
                import pymodbus  # noqa: F401 - only to tell a missing extra early
            except ImportError:
                problems.add(
                    "meter.kind",
                    f"{meter.kind} needs pymodbus: pip install 'wattmesh[agent,modbus]'",
                )
            if isinstance(meter, ModbusTcpSection):
                return ModbusTcpSpec(meter.host, meter.port, meter.map, meter.unit)
            return ModbusRtuSpec(
                meter.device, meter.map, meter.unit, meter.baud, meter.parity, meter.stopbits
            )


def _battery(
    section: BatterySection | None, meter: MeterSpec | ReplaySpec, problems: _Problems
) -> BatterySettings | None:
    """The battery's settings; limits that depend on each other are checked here."""
    if section is None:
        return None
    if section.min_soc_wh > section.capacity_wh:
        problems.add(
            "battery.min_soc_wh",
            f"{section.min_soc_wh} Wh is above battery.capacity_wh ({section.capacity_wh} Wh)",
        )
        return None
    soc = section.min_soc_wh if section.initial_soc_wh is None else section.initial_soc_wh
    if not section.min_soc_wh <= soc <= section.capacity_wh:
        problems.add(
            "battery.initial_soc_wh",
            f"{soc} Wh is outside [min_soc_wh, capacity_wh] = "
            f"[{section.min_soc_wh}, {section.capacity_wh}] Wh",
        )
        return None
    if not isinstance(meter, ReplaySpec):
        problems.add(
            "battery.controller",
            'a simulated battery runs in the replayed household: it needs meter.kind = "replay"',
        )
        return None
    spec = BatterySpec(
        capacity_wh=section.capacity_wh,
        max_charge_w=section.max_charge_w,
        max_discharge_w=section.max_discharge_w,
        round_trip_permille=section.round_trip_permille,
        min_soc_wh=section.min_soc_wh,
    )
    return BatterySettings(spec, soc, section.controller)


def _check_map(name: str, base: Path, problems: _Problems) -> None:
    from wattmesh.agents.metering.modbus_maps import load_map

    ref = str(base / name) if name.endswith(".toml") or "/" in name else name
    try:
        load_map(ref)
    except MeterError as exc:
        problems.add("meter.map", str(exc))


def _broker_address(url: str, problems: _Problems) -> BrokerAddress | None:
    """The address of an ``mqtt://`` or ``mqtts://`` URL (mqtts: port 8883 by default)."""
    url = url.strip()
    secure = url.startswith("mqtts://")
    try:
        address = parse_broker_url("mqtt://" + url.removeprefix("mqtts://") if secure else url)
    except ValueError as exc:
        problems.add("broker", str(exc).replace("mqtt://host[:port]", "mqtt(s)://host[:port]"))
        return None
    if secure and urlsplit(url).port is None:
        return BrokerAddress(address.host, _MQTTS_PORT)
    return address


def _with_url_problems(path: Path, problems: list[str]) -> list[str]:
    """The schema's problems and the broker URL's, so that one round names them all
    (the URL is otherwise checked only once the schema passed)."""
    if any(p.startswith("broker:") for p in problems):
        return problems
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return problems  # already reported as the file's problem
    url = raw.get("broker")
    found = _Problems()
    if isinstance(url, str):
        _broker_address(url, found)
    return problems + found.items


def _transport(model: AgentSection, base: Path, problems: _Problems) -> TransportConfig | None:
    url = model.broker.strip()
    secure = url.startswith("mqtts://")
    address = _broker_address(url, problems)
    if address is None:
        return None
    mqtt = model.mqtt
    tls: TlsConfig | None = None
    if mqtt.tls is not None and not secure:
        problems.add("mqtt.tls", "TLS settings need an mqtts:// broker URL")
    if secure:
        t = mqtt.tls or TlsSection()
        files = {
            name: None if value is None else _readable(base / value, f"mqtt.tls.{name}", problems)
            for name, value in (
                ("ca_file", t.ca_file),
                ("cert_file", t.cert_file),
                ("key_file", t.key_file),
            )
        }
        try:
            tls = TlsConfig(files["ca_file"], files["cert_file"], files["key_file"])
            if not problems.items:
                tls.context()  # loads the CA and client certificate now, not at connect time
        except (ValueError, OSError) as exc:
            problems.add("mqtt.tls", str(exc))
    password = None
    if mqtt.password_file is not None:
        if mqtt.username is None:
            problems.add("mqtt.password_file", "a password needs mqtt.username")
        password = _secret_file(base / mqtt.password_file, "mqtt.password_file", problems)
    if problems.items:
        return None
    return TransportConfig(
        address=address,
        client_id=mqtt.client_id or f"{model.market_id}-{model.agent_id}",
        username=mqtt.username,
        password=password,
        keepalive_s=mqtt.keepalive_s,
        tls=tls,
    )


def check_agent_config(path: Path) -> tuple[AgentFileConfig | None, list[str]]:
    """Validate ``path`` in this process: the configuration, or None and every problem.

    Loads pydantic into this process (``--validate-config``, tests); the agent itself
    uses :func:`check_agent_config_isolated`.
    """
    from wattmesh.config.agent_validate import validate_file

    model, problems = validate_file(path)
    if model is None:
        return None, _with_url_problems(path, problems)
    return _build(model, path.parent)


def check_agent_config_isolated(
    path: Path, child: ValidationChild | None = None
) -> tuple[AgentFileConfig | None, list[str]]:
    """Like :func:`check_agent_config`, with the pydantic validation in a child process.

    The child (:class:`~wattmesh.config.agent_validate_child.ValidationChild`, pass one already
    started for ``path`` to overlap it with other work) returns the validated sections
    as plain dataclasses, so pydantic's memory never stays in the long-running agent.
    """
    model, problems = (child or ValidationChild(path)).result()
    if model is None:
        return None, _with_url_problems(path, problems)
    return _build(model, path.parent)


def _public_key(
    base: Path, where: str, name: str | None, problems: _Problems
) -> VerifyingKey | None:
    """The PEM public key file ``name`` (relative to ``base``) or None if not given."""
    if name is None:
        return None
    try:
        return load_verifying_key(base / name)
    except WattmeshError as exc:
        problems.add(where, str(exc))
        return None


def _build(model: AgentSection, base: Path) -> tuple[AgentFileConfig | None, list[str]]:
    """Check the files the validated sections name and build the configuration."""
    problems = _Problems()
    try:
        topics = Topics(check_segment(model.market_id, "market_id"), model.topic_prefix)
    except ConfigError as exc:
        problems.add("topic_prefix", str(exc))
        topics = None
    key: SigningKey | None = None
    try:
        key = load_signing_key(base / model.key_file)
    except WattmeshError as exc:
        problems.add("key_file", str(exc))
    operator = _public_key(base, "operator_key_file", model.operator_key_file, problems)
    forecaster = _public_key(base, "forecaster_key_file", model.forecaster_key_file, problems)
    meter = _meter_spec(model, base, problems)
    battery = _battery(model.battery, meter, problems)
    transport = _transport(model, base, problems)
    if problems.items or key is None or transport is None or topics is None:
        return None, problems.items
    ha = model.homeassistant
    return (
        AgentFileConfig(
            agent=AgentConfig(
                agent_id=model.agent_id,
                topics=topics,
                operator_key=operator,
                forecaster_key=forecaster,
                max_power_w=model.max_power_w,
                forecast_timeout_s=model.forecast_timeout_s,
                max_clock_drift_s=model.health.max_clock_drift_s,
                diagnostics_interval_s=model.health.diagnostics_interval_s,
            ),
            transport=transport,
            key=key,
            state_dir=base / model.state_dir,
            meter=meter,
            base=base,
            homeassistant=(
                HomeAssistantConfig(
                    prefix=ha.prefix, currency=ha.currency, state_interval_s=ha.state_interval_s
                )
                if ha.enabled
                else None
            ),
            outbox=OutboxSettings(
                capacity=model.outbox.capacity,
                commit_interval_s=model.outbox.commit_interval_s,
                flush_timeout_s=model.outbox.flush_timeout_s,
                max_in_flight=model.outbox.max_in_flight,
            ),
            battery=battery,
        ),
        [],
    )


def load_agent_config(path: Path) -> AgentFileConfig:
    """The validated configuration; ConfigError listing every problem otherwise."""
    return _raise_problems(path, *check_agent_config(path))


def load_agent_config_isolated(path: Path, child: ValidationChild | None = None) -> AgentFileConfig:
    """:func:`load_agent_config` with pydantic in a child process (what the agent runs)."""
    return _raise_problems(path, *check_agent_config_isolated(path, child))


def _raise_problems(
    path: Path, config: AgentFileConfig | None, problems: list[str]
) -> AgentFileConfig:
    if config is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return config
