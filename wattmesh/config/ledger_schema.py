"""The sections of ``ledger.toml`` as frozen dataclasses: the shape pydantic validates.

Constraints are ``annotated_types`` metadata and ``__pydantic_config__`` refuses unknown
keys; :mod:`wattmesh.config.ledger_config` validates. Unlike the agent's schema (which keeps
pydantic and annotated-types out of the agent process) this one imports pydantic (for
``Strict`` integers): the ledger may keep it loaded (SQLModel needs it anyway). Times in
seconds (``_s``), money in micro-units per kWh, hours in UTC. The format is documented
in docs/protocol.md ("`wattmesh ledger run`") and ``examples/ledger.toml``.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Final

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import Strict

from wattmesh.broker.topics import DEFAULT_PREFIX
from wattmesh.config.agent_schema import TlsSection

_FORBID: Final = {"extra": "forbid"}

# Numbers are strict: a quoted "3" is refused (an integer still passes as a float).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
NonEmpty = Annotated[str, MinLen(1)]
Port = Annotated[Int, Ge(1), Le(65535)]
Micro = Annotated[Int, Ge(0), Le(100_000_000)]  # up to 100 currency units per kWh

DEFAULT_INTERVAL_S: Final = 900
DEFAULT_GATE_TIMEOUT_S: Final = 120.0
DEFAULT_GRACE_S: Final = 30.0

# TOML path -> pattern (checked with pydantic's wording, as for agent.toml).
PATTERNS: Final = {
    "market_id": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
    "mechanism.k": re.compile(r"^[0-9]+/[1-9][0-9]*$"),
}


@dataclass(frozen=True)
class DatabaseSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    url: NonEmpty = "sqlite:///ledger.db"  # a relative SQLite path: from the file's folder


@dataclass(frozen=True)
class LedgerMqttSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    host: NonEmpty
    port: Port | None = None  # default 1883, or 8883 with [mqtt.tls]
    client_id: NonEmpty | None = None  # default "<market_id>-ledger"; keep it stable
    username: NonEmpty | None = None
    password_file: str | None = None
    keepalive_s: Annotated[Int, Ge(1), Le(3600)] = 30
    inbound_queue_size: Annotated[Int, Ge(1), Le(10_000_000)] = 100_000
    tls: TlsSection | None = None


@dataclass(frozen=True)
class GateSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    timeout_s: Annotated[Float, Gt(0)] = DEFAULT_GATE_TIMEOUT_S
    grace_s: Annotated[Float, Ge(0)] = DEFAULT_GRACE_S


@dataclass(frozen=True)
class MechanismSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    name: NonEmpty = "uniform"
    k: str = "1/2"  # a fraction "n/d" in [0, 1]; uniform and pay-as-bid only
    network_fee_micro_per_kwh: Micro = 0


@dataclass(frozen=True)
class TariffPeriodSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    start_hour_utc: Annotated[Int, Ge(0), Le(23)]
    retail_micro_per_kwh: Micro
    feed_in_micro_per_kwh: Micro


@dataclass(frozen=True)
class IngestSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    max_batch: Annotated[Int, Ge(1), Le(100_000)] = 1000
    signature_workers: Annotated[Int, Ge(0), Le(64)] = 0  # 0: verify in a thread here


@dataclass(frozen=True)
class LeaseSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    poll_s: Annotated[Float, Gt(0), Le(60)] = 1.0


@dataclass(frozen=True)
class MetricsSection:
    """``ledger run``'s Prometheus endpoint, ``http://host:port/metrics`` (optional)."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    port: Port
    host: NonEmpty = "127.0.0.1"


@dataclass(frozen=True)
class LedgerSection:
    """The whole file."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    market_id: str
    operator_key_file: str
    registry_file: str
    mqtt: LedgerMqttSection
    tariffs: Annotated[list[TariffPeriodSection], MinLen(1)]
    interval_s: Annotated[Int, Ge(1), Le(86_400)] = DEFAULT_INTERVAL_S
    topic_prefix: str = DEFAULT_PREFIX
    database: DatabaseSection = field(default_factory=DatabaseSection)
    gate: GateSection = field(default_factory=GateSection)
    mechanism: MechanismSection = field(default_factory=MechanismSection)
    ingest: IngestSection = field(default_factory=IngestSection)
    lease: LeaseSection = field(default_factory=LeaseSection)
    metrics: MetricsSection | None = None
    forecaster_key_file: str | None = None  # its public key: the anomaly flags it signs
