"""The sections of a scenario file (``simulate --scenario FILE``): what pydantic validates.

Frozen dataclasses.

Like :mod:`wattmesh.config.ledger_schema` (strict numbers, unknown keys refused).
:mod:`wattmesh.config.scenario_config` validates and reads the CSV files. Every value
left out is taken from the command line's flags or their defaults; a flag given on the
command line overrides the file. Energy in Wh, power in W, money in micro-units per kWh,
angles in degrees. The format: docs/simulation.md ("Scenario files") and
``examples/scenario.toml``.
"""

# No ``from __future__ import annotations``: pydantic reads these annotations as objects.

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, ClassVar, Final, Literal

from annotated_types import Ge, Le, MinLen
from pydantic import Strict

from wattmesh.broker.connection import MAX_POWER_LIMIT_W
from wattmesh.config.ledger_schema import Float, Int, Micro, NonEmpty, TariffPeriodSection

__all__ = ["PATTERNS", "ScenarioSection"]

_FORBID: Final = {"extra": "forbid"}

Share = Annotated[Float, Ge(0.0), Le(1.0)]
Start = Annotated[datetime, Strict()] | Annotated[date, Strict()]

# TOML path -> pattern (checked with pydantic's wording, as for ledger.toml).
PATTERNS: Final = {"market.k": re.compile(r"^[0-9]+/[1-9][0-9]*$")}
AGENT_ID: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a topic segment


@dataclass(frozen=True)
class LocationSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    latitude_deg: Annotated[Float, Ge(-90.0), Le(90.0)]
    longitude_deg: Annotated[Float, Ge(-180.0), Le(180.0)]


@dataclass(frozen=True)
class MarketSection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    # one mechanism, or several: the same scenario and seed under each
    mechanism: NonEmpty | Annotated[list[NonEmpty], MinLen(1)] | None = None
    k: str = "1/2"  # a fraction "n/d" in [0, 1]; uniform and pay-as-bid only
    network_fee_micro_per_kwh: Micro | None = None


@dataclass(frozen=True)
class GeneratedSection:
    """Seeded households ``h001``, ``h002``, ... as ``--households`` draws them."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    households: Annotated[Int, Ge(0), Le(100_000)] | None = None
    pv_share: Share | None = None
    battery_share: Share | None = None  # of the PV households


@dataclass(frozen=True)
class BatterySection:
    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    capacity_wh: Annotated[Int, Ge(1), Le(10_000_000)]
    max_charge_w: Annotated[Int, Ge(0), Le(MAX_POWER_LIMIT_W)]
    max_discharge_w: Annotated[Int, Ge(0), Le(MAX_POWER_LIMIT_W)]
    round_trip_permille: Annotated[Int, Ge(1), Le(1000)] = 900
    min_soc_wh: Annotated[Int, Ge(0)] = 0


@dataclass(frozen=True)
class HouseholdSection:
    """One household. Its demand: ``annual_demand_wh`` (the BDEW profile, seeded) or
    ``demand_csv``; its PV: ``pv_peak_w`` (pvlib at the location, seeded orientation
    unless ``tilt_deg`` and ``azimuth_deg`` are given) or ``pv_csv`` (with ``pv_peak_w``
    its capacity)."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    id: str
    annual_demand_wh: Annotated[Int, Ge(1), Le(1_000_000_000)] | None = None
    demand_csv: NonEmpty | None = None  # timestamp,value_w (as forecast backtest)
    pv_peak_w: Annotated[Int, Ge(0), Le(MAX_POWER_LIMIT_W)] = 0
    pv_csv: NonEmpty | None = None
    tilt_deg: Annotated[Int, Ge(0), Le(90)] | None = None
    azimuth_deg: Annotated[Int, Ge(0), Le(360)] | None = None  # east of north; 180 south
    battery: BatterySection | None = None
    max_power_w: Annotated[Int, Ge(1), Le(MAX_POWER_LIMIT_W)] | None = None  # connection


@dataclass(frozen=True)
class ScenarioSection:
    """The whole file."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID
    seed: Annotated[Int, Ge(0)] | None = None
    days: Annotated[Int, Ge(1), Le(3660)] | None = None
    history_days: Annotated[Int, Ge(1), Le(3660)] | None = None
    start: Start | None = None  # the first simulated day (a date: midnight UTC)
    interval_s: Annotated[Int, Ge(60), Le(3600)] = 900
    forecaster: Literal["prophet", "naive"] | None = None
    currency: str | None = None
    location: LocationSection | None = None
    market: MarketSection = field(default_factory=MarketSection)
    tariffs: Annotated[list[TariffPeriodSection], MinLen(1)] | None = None
    generated: GeneratedSection = field(default_factory=GeneratedSection)
    households: list[HouseholdSection] = field(default_factory=list)
