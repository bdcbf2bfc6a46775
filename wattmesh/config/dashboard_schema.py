"""The sections of ``dashboard.toml`` as frozen dataclasses: the shape pydantic validates.

As :mod:`wattmesh.config.ledger_schema` (whose ``[mqtt]`` section and strict numbers it
shares): constraints are ``annotated_types`` metadata, ``__pydantic_config__`` refuses
unknown keys, :mod:`wattmesh.config.dashboard_config` validates. Documented in
docs/dashboard.md ("dashboard.toml") and ``examples/dashboard.toml``.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Final

from annotated_types import Ge, Le

from wattmesh.config.ledger_schema import Int, LedgerMqttSection, NonEmpty, Port

__all__ = ["DashboardSection"]

_FORBID: Final = {"extra": "forbid"}

DEFAULT_HTTP_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 8080

# TOML path -> pattern (checked with pydantic's wording, as for ledger.toml).
PATTERNS: Final = {
    "market_id": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
    "currency": re.compile(r"^[A-Z]{3}$"),  # ISO 4217
}
DEFAULT_CURRENCY: Final = "EUR"
DEFAULT_VERIFY_EVERY_S: Final = 3600


@dataclass(frozen=True)
class DashboardDatabaseSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    url: NonEmpty  # the ledger's database, opened read-only
    read_model_url: NonEmpty | None = None  # default: beside a SQLite ledger / own schema


@dataclass(frozen=True)
class HttpSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    host: NonEmpty = DEFAULT_HTTP_HOST
    port: Port = DEFAULT_HTTP_PORT


@dataclass(frozen=True)
class DashboardSection:
    """The whole file."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    database: DashboardDatabaseSection
    market_id: str | None = None  # default: the ledger's
    currency: str = DEFAULT_CURRENCY  # ISO 4217 code of the ledger's micro-units
    # verify the whole log at start and then every so many seconds; 0: never
    verify_every_s: Annotated[Int, Ge(0), Le(30 * 86_400)] = DEFAULT_VERIFY_EVERY_S
    operator_key_file: str | None = None  # PEM public key; needed for an anchored verify
    operator_token_file: str | None = None  # mode 0600; none: no operator login
    forecaster_key_file: str | None = None  # PEM public key; default: operator_key_file's
    mqtt: LedgerMqttSection | None = None  # none: history only, no live updates
    http: HttpSection = field(default_factory=HttpSection)
