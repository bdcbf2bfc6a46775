"""``agent.toml``: the household agent's configuration, validated with pydantic.

Unknown keys are errors; every problem is reported with its TOML path. Secrets
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

    [health]                                    # optional; these are the defaults
    max_clock_drift_s = 300                     # refuse orders beyond this drift (s)
    diagnostics_interval_s = 60.0               # retained diagnostics at most this often (s)
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.agent import AgentConfig
from agents.clock import DEFAULT_MAX_DRIFT_S
from agents.homeassistant import HomeAssistantConfig
from agents.lifecycle import DEFAULT_FLUSH_TIMEOUT_S, OutboxSettings
from agents.metering.errors import MeterError
from agents.metering.p1 import P1Version
from agents.metering.spec import (
    MeterSpec,
    ModbusRtuSpec,
    ModbusTcpSpec,
    P1FileSpec,
    P1SerialSpec,
    P1TcpSpec,
)
from agents.outbox import DEFAULT_CAPACITY
from agents.publisher import DEFAULT_COMMIT_INTERVAL_S
from broker.errors import ConfigError, WattmeshError
from broker.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from broker.topics import DEFAULT_PREFIX, Topics, check_segment
from broker.transport import BrokerAddress, TlsConfig, TransportConfig, parse_broker_url

_MQTTS_PORT = 8883
_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Tls(_Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class _Mqtt(_Strict):
    username: str | None = Field(default=None, min_length=1)
    password_file: str | None = None
    client_id: str | None = Field(default=None, min_length=1)
    keepalive_s: int = Field(default=30, ge=1, le=3600)
    tls: _Tls | None = None


class _Replay(_Strict):
    kind: Literal["replay"]
    file: str


class _P1Serial(_Strict):
    kind: Literal["p1-serial"]
    device: str = Field(min_length=1)
    version: P1Version = P1Version.DSMR5
    baud: int | None = Field(default=None, ge=300, le=4_000_000)


class _P1Tcp(_Strict):
    kind: Literal["p1-tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    version: P1Version = P1Version.DSMR5


class _P1File(_Strict):
    kind: Literal["p1-file"]
    path: str = Field(min_length=1)
    version: P1Version = P1Version.DSMR5


class _ModbusTcp(_Strict):
    kind: Literal["modbus-tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=247)
    map: str = Field(min_length=1)


class _ModbusRtu(_Strict):
    kind: Literal["modbus-rtu"]
    device: str = Field(min_length=1)
    map: str = Field(min_length=1)
    unit: int = Field(default=1, ge=0, le=247)
    baud: int = Field(default=9600, ge=300, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


_Meter = Annotated[
    _Replay | _P1Serial | _P1Tcp | _P1File | _ModbusTcp | _ModbusRtu,
    Field(discriminator="kind"),
]


class _HomeAssistant(_Strict):
    enabled: bool = False
    prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    state_interval_s: float = Field(default=10.0, ge=1.0, le=3600.0)


class _Outbox(_Strict):
    capacity: int = Field(default=DEFAULT_CAPACITY, ge=1, le=10_000_000)
    commit_interval_s: float = Field(default=DEFAULT_COMMIT_INTERVAL_S, ge=0.0, le=60.0)
    flush_timeout_s: float = Field(default=DEFAULT_FLUSH_TIMEOUT_S, ge=0.0, le=300.0)


class _Health(_Strict):
    max_clock_drift_s: int = Field(default=DEFAULT_MAX_DRIFT_S, ge=1, le=86_400)
    diagnostics_interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)


class _Agent(_Strict):
    agent_id: str = Field(pattern=_ID)
    market_id: str = Field(pattern=_ID)
    topic_prefix: str = DEFAULT_PREFIX
    broker: str
    key_file: str
    state_dir: str
    operator_key_file: str | None = None
    forecast_timeout_s: float = Field(default=60.0, gt=0)
    mqtt: _Mqtt = _Mqtt()
    meter: _Meter
    homeassistant: _HomeAssistant = _HomeAssistant()
    outbox: _Outbox = _Outbox()
    health: _Health = _Health()


@dataclass(frozen=True)
class ReplaySpec:
    """The simulated meter replaying a JSON profile (see wattmesh/agent_cli.py)."""

    path: Path


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


class _Problems:
    """Collects every problem, each prefixed with its TOML path."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            if where.endswith("password"):
                message += " (secrets are read from files: use password_file)"
        elif error["type"] == "union_tag_invalid":
            message = (
                "unknown meter kind; expected replay, p1-serial, p1-tcp, p1-file, "
                "modbus-tcp or modbus-rtu"
            )
        problems.append(f"{where}: {message}")
    return problems


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


def _meter_spec(model: _Agent, base: Path, problems: _Problems) -> MeterSpec | ReplaySpec:
    meter = model.meter
    match meter:
        case _Replay():
            return ReplaySpec(_readable(base / meter.file, "meter.file", problems))
        case _P1Serial():
            return P1SerialSpec(meter.device, meter.version, meter.baud)
        case _P1Tcp():
            return P1TcpSpec(meter.host, meter.port, meter.version)
        case _P1File():
            _readable(base / meter.path, "meter.path", problems)
            return P1FileSpec(meter.path, meter.version)
        case _ModbusTcp() | _ModbusRtu():
            _check_map(meter.map, base, problems)
            try:
                import pymodbus  # noqa: F401 - only to tell a missing extra early
            except ImportError:
                problems.add(
                    "meter.kind",
                    f"{meter.kind} needs pymodbus: pip install 'wattmesh[agent,modbus]'",
                )
            if isinstance(meter, _ModbusTcp):
                return ModbusTcpSpec(meter.host, meter.port, meter.map, meter.unit)
            return ModbusRtuSpec(
                meter.device, meter.map, meter.unit, meter.baud, meter.parity, meter.stopbits
            )


def _check_map(name: str, base: Path, problems: _Problems) -> None:
    from agents.metering.modbus_maps import load_map

    ref = str(base / name) if name.endswith(".toml") or "/" in name else name
    try:
        load_map(ref)
    except MeterError as exc:
        problems.add("meter.map", str(exc))


def _transport(model: _Agent, base: Path, problems: _Problems) -> TransportConfig | None:
    url = model.broker.strip()
    secure = url.startswith("mqtts://")
    try:
        address = parse_broker_url("mqtt://" + url.removeprefix("mqtts://") if secure else url)
        if secure and urlsplit(url).port is None:
            address = BrokerAddress(address.host, _MQTTS_PORT)
    except ValueError as exc:
        problems.add("broker", str(exc).replace("mqtt://host[:port]", "mqtt(s)://host[:port]"))
        return None
    mqtt = model.mqtt
    tls: TlsConfig | None = None
    if mqtt.tls is not None and not secure:
        problems.add("mqtt.tls", "TLS settings need an mqtts:// broker URL")
    if secure:
        t = mqtt.tls or _Tls()
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


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}") from exc


def check_agent_config(path: Path) -> tuple[AgentFileConfig | None, list[str]]:
    """Validate ``path``: the configuration, or None and every problem (TOML path first)."""
    try:
        raw = _read_toml(path)
    except ConfigError as exc:
        return None, [str(exc)]
    try:
        model = _Agent.model_validate(raw)
    except ValidationError as exc:
        return None, _pydantic_problems(exc)
    base = path.parent
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
    operator: VerifyingKey | None = None
    if model.operator_key_file is not None:
        try:
            operator = load_verifying_key(base / model.operator_key_file)
        except WattmeshError as exc:
            problems.add("operator_key_file", str(exc))
    meter = _meter_spec(model, base, problems)
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
            ),
        ),
        [],
    )


def load_agent_config(path: Path) -> AgentFileConfig:
    """The validated configuration; ConfigError listing every problem otherwise."""
    config, problems = check_agent_config(path)
    if config is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return config
