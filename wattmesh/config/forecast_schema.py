"""The sections of ``forecast.toml`` as frozen dataclasses: the shape pydantic validates.

Like :mod:`wattmesh.config.ledger_schema` (strict numbers, unknown keys refused; the
``[mqtt]`` section is the ledger's). :mod:`wattmesh.config.forecast_config` validates.
Times in seconds (``_s``) or days, hours in UTC, power in W. The format is documented
in docs/forecasting.md ("The service") and ``examples/forecast.toml``.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Final

from annotated_types import Ge, Le, MinLen

from wattmesh.broker.topics import DEFAULT_PREFIX
from wattmesh.config.ledger_schema import Int, LedgerMqttSection, NonEmpty

__all__ = ["PATTERNS", "ForecastSection"]

_FORBID: Final = {"extra": "forbid"}

Model = Annotated[str, MinLen(1)]  # checked against forecasting.models by the loader

PATTERNS: Final = {"market_id": re.compile(r"^[A-Za-z0-9_.-]{1,64}$")}


@dataclass(frozen=True)
class ForecastDatabaseSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    url: NonEmpty = "sqlite:///forecast.db"  # the service's own tables (history, fits)


@dataclass(frozen=True)
class LedgerLogSection:
    """Where the ledger's log is read (read only): its training data."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    url: NonEmpty = "sqlite:///ledger.db"


@dataclass(frozen=True)
class ModelsSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    demand: Model = "auto"  # auto, or a model of forecasting.models (naive-day, mean-7d, ...)
    pv: Model = "auto"
    horizon: Annotated[Int, Ge(1), Le(672)] = 96  # intervals in each forecast
    window_days: Annotated[Int, Ge(1), Le(366)] = 28
    select_every_days: Annotated[Int, Ge(1), Le(366)] = 7  # auto: re-choose each model this often


@dataclass(frozen=True)
class RefitSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    hour_utc: Annotated[Int, Ge(0), Le(23)] = 2  # every household refitted daily at this hour
    workers: Annotated[Int, Ge(0), Le(64)] = 2  # fitting processes; 0: fit in the service


@dataclass(frozen=True)
class ForecastSection:
    """The whole file."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    market_id: str
    forecaster_key_file: str  # its private key: signs forecasts and health
    operator_key_file: str  # the operator's public key: checks the log's checkpoints
    registry_file: str  # the ledger's registry: households and their keys
    mqtt: LedgerMqttSection
    interval_s: Annotated[Int, Ge(1), Le(86_400)] = 900
    topic_prefix: str = DEFAULT_PREFIX
    database: ForecastDatabaseSection = field(default_factory=ForecastDatabaseSection)
    ledger: LedgerLogSection = field(default_factory=LedgerLogSection)
    models: ModelsSection = field(default_factory=ModelsSection)
    refit: RefitSection = field(default_factory=RefitSection)
    pv_capacity_w: dict[Annotated[str, MinLen(1)], Annotated[Int, Ge(1), Le(1_000_000)]] = field(
        default_factory=dict
    )
