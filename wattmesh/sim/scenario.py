"""Simulated households for ``wattmesh simulate``: the scenario assembly.

A scenario is a fixed set of households, each with a demand profile and a PV
production profile in integer watt-hours per interval, covering a history
period (for forecasters to learn from) followed by the simulated period.

* Household specs (:func:`make_households`): seeded PV peak power, annual
  demand and, for a share of the PV households, a home battery.
* Demand: :mod:`wattmesh.sim.demand_model` (BDEW H25 from ``demandlib``, seeded
  time shift and log-normal noise), scaled to each household's annual demand.
* PV: :mod:`wattmesh.sim.pv_model` (PVWatts-style ``pvlib`` model on the TMY3 file
  shipped inside pvlib), per Wp for each household's seeded orientation,
  scaled to its peak power.

Nothing is downloaded: all data comes from files inside installed packages.
Everything is a pure function of the arguments: the same arguments give an
identical scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from wattmesh.agents.battery import BatterySpec
from wattmesh.sim.demand_model import (
    DEMAND_MAX_SHIFT_S,
    DEMAND_NOISE_SIGMA,
    DemandCumulative,
    demand_cumulative,
)
from wattmesh.sim.pv_model import (
    WEATHER_SITE_LATITUDE_DEG,
    WEATHER_SITE_LONGITUDE_DEG,
    FloatArray,
    PvModel,
    draw_orientation,
)

__all__ = [
    "ANNUAL_DEMAND_MAX_WH",
    "ANNUAL_DEMAND_MIN_WH",
    "ANNUAL_DEMAND_STEP_WH",
    "BATTERY_CAPACITY_MAX_WH",
    "BATTERY_CAPACITY_MIN_WH",
    "BATTERY_CAPACITY_STEP_WH",
    "BATTERY_MIN_SOC_PERMILLE",
    "BATTERY_POWER_MAX_W",
    "BATTERY_POWER_MIN_W",
    "BATTERY_POWER_STEP_W",
    "BATTERY_ROUND_TRIP_PERMILLE",
    "DEFAULT_START",
    "DEMAND_MAX_SHIFT_S",
    "DEMAND_NOISE_SIGMA",
    "PV_PEAK_MAX_W",
    "PV_PEAK_MIN_W",
    "PV_PEAK_STEP_W",
    "WEATHER_SITE_LATITUDE_DEG",
    "WEATHER_SITE_LONGITUDE_DEG",
    "HouseholdProfile",
    "HouseholdSpec",
    "Scenario",
    "build_scenario",
    "make_households",
]

DEFAULT_START = datetime(2025, 6, 2, tzinfo=UTC)
"""Default start of the history period (first interval)."""

PV_PEAK_MIN_W = 3_000
PV_PEAK_MAX_W = 8_000
PV_PEAK_STEP_W = 100
ANNUAL_DEMAND_MIN_WH = 2_000_000
ANNUAL_DEMAND_MAX_WH = 6_000_000
ANNUAL_DEMAND_STEP_WH = 1_000

BATTERY_CAPACITY_MIN_WH = 5_000
BATTERY_CAPACITY_MAX_WH = 10_000
BATTERY_CAPACITY_STEP_WH = 500
BATTERY_POWER_MIN_W = 2_500
BATTERY_POWER_MAX_W = 5_000
BATTERY_POWER_STEP_W = 100
BATTERY_ROUND_TRIP_PERMILLE = 900
BATTERY_MIN_SOC_PERMILLE = 100
"""Seeded batteries: capacity and power (charge = discharge) from these ranges; 90 %
round trip; the SoC is kept above 10 % of the capacity."""

# Seed-stream identifiers: SeedSequence(seed, spawn_key=(stream, ...)).
_STREAM_PV_SELECTION = 0
_STREAM_SPEC = 1
_STREAM_PROFILE = 2
_STREAM_BATTERY = 3  # (3, 0): which households; (3, 1, i): household i's battery


@dataclass(frozen=True)
class HouseholdSpec:
    """Static description of a simulated household.

    ``pv_peak_w`` is the PV peak (nameplate) power in W, 0 without PV;
    ``annual_demand_wh`` is the consumption over one calendar year in Wh;
    ``battery`` is the home battery behind the meter, if any.
    """

    agent_id: str
    pv_peak_w: int
    annual_demand_wh: int
    battery: BatterySpec | None = None

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise ValueError("agent_id must not be empty")
        if self.pv_peak_w < 0:
            raise ValueError(f"pv_peak_w must be >= 0, got {self.pv_peak_w}")
        if self.annual_demand_wh <= 0:
            raise ValueError(f"annual_demand_wh must be > 0, got {self.annual_demand_wh}")


@dataclass(frozen=True)
class HouseholdProfile:
    """Per-interval energy of one household, in Wh (integers >= 0).

    ``demand_wh[i]`` is consumed and ``pv_wh[i]`` produced during interval ``i``
    of the owning :class:`Scenario`.
    """

    spec: HouseholdSpec
    demand_wh: tuple[int, ...]
    pv_wh: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.demand_wh) != len(self.pv_wh):
            raise ValueError(
                f"{self.spec.agent_id}: demand_wh has {len(self.demand_wh)} intervals,"
                f" pv_wh has {len(self.pv_wh)}"
            )
        if self.demand_wh and min(self.demand_wh) < 0:
            raise ValueError(f"{self.spec.agent_id}: demand_wh must be >= 0")
        if self.pv_wh and min(self.pv_wh) < 0:
            raise ValueError(f"{self.spec.agent_id}: pv_wh must be >= 0")


@dataclass(frozen=True)
class Scenario:
    """Households over ``interval_count`` intervals of ``interval_s`` seconds.

    ``start`` (UTC) begins interval 0; intervals ``0 .. history_intervals - 1``
    are history and ``history_intervals`` is the first simulated interval.
    """

    start: datetime
    interval_s: int
    history_intervals: int
    households: tuple[HouseholdProfile, ...]

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError(f"start must be a UTC datetime, got {self.start!r}")
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")
        if not self.households:
            raise ValueError("a scenario needs at least one household")
        count = len(self.households[0].demand_wh)
        if any(len(h.demand_wh) != count for h in self.households):
            raise ValueError("all households must cover the same number of intervals")
        if not 0 <= self.history_intervals <= count:
            raise ValueError(
                f"history_intervals must be in [0, {count}], got {self.history_intervals}"
            )

    @property
    def interval_count(self) -> int:
        """Number of intervals (history plus simulated) in every profile."""
        return len(self.households[0].demand_wh)

    @property
    def simulated_intervals(self) -> int:
        """Number of intervals after the history."""
        return self.interval_count - self.history_intervals

    def interval_start(self, index: int) -> datetime:
        """UTC start of interval ``index`` (``interval_count`` gives the end)."""
        return self.start + timedelta(seconds=index * self.interval_s)


def make_households(
    n: int, *, seed: int, pv_share: float, battery_share: float = 0.0
) -> tuple[HouseholdSpec, ...]:
    """Draw ``n`` household specs ``h001, h002, ...``.

    ``floor(pv_share * n + 0.5)`` of them (chosen by the seed) get a PV peak
    power in [3000, 8000] W (steps of 100 W); the others 0.  Annual demand is
    in [2000, 6000] kWh (steps of 1 kWh).  Household ``i``'s own values come
    from a seed stream of its own.

    ``floor(battery_share * pv_count + 0.5)`` of the PV households also get a battery
    (see ``BATTERY_*``), drawn from seed streams of their own, so a share of 0 leaves
    every other value as it was.
    """
    _check_count(n)
    _check_seed(seed)
    _check_pv_share(pv_share)
    _check_pv_share(battery_share, name="battery_share")
    pv_count = math.floor(pv_share * n + 0.5)
    order = _rng(seed, _STREAM_PV_SELECTION).permutation(n)
    has_pv = np.zeros(n, dtype=np.bool_)
    has_pv[order[:pv_count]] = True
    specs: list[HouseholdSpec] = []
    for i in range(n):
        rng = _rng(seed, _STREAM_SPEC, i)
        demand_steps = int(
            rng.integers(
                ANNUAL_DEMAND_MIN_WH // ANNUAL_DEMAND_STEP_WH,
                ANNUAL_DEMAND_MAX_WH // ANNUAL_DEMAND_STEP_WH,
                endpoint=True,
            )
        )
        peak_steps = int(
            rng.integers(
                PV_PEAK_MIN_W // PV_PEAK_STEP_W, PV_PEAK_MAX_W // PV_PEAK_STEP_W, endpoint=True
            )
        )
        specs.append(
            HouseholdSpec(
                agent_id=f"h{i + 1:03d}",
                pv_peak_w=peak_steps * PV_PEAK_STEP_W if has_pv[i] else 0,
                annual_demand_wh=demand_steps * ANNUAL_DEMAND_STEP_WH,
            )
        )
    return _add_batteries(tuple(specs), seed=seed, battery_share=battery_share)


def _add_batteries(
    specs: tuple[HouseholdSpec, ...], *, seed: int, battery_share: float
) -> tuple[HouseholdSpec, ...]:
    with_pv = [i for i, spec in enumerate(specs) if spec.pv_peak_w > 0]
    count = math.floor(battery_share * len(with_pv) + 0.5)
    if count == 0:
        return specs
    order = _rng(seed, _STREAM_BATTERY, 0).permutation(len(with_pv))
    chosen = {with_pv[int(k)] for k in order[:count]}
    result = list(specs)
    for i in sorted(chosen):
        rng = _rng(seed, _STREAM_BATTERY, 1, i)
        capacity = BATTERY_CAPACITY_STEP_WH * int(
            rng.integers(
                BATTERY_CAPACITY_MIN_WH // BATTERY_CAPACITY_STEP_WH,
                BATTERY_CAPACITY_MAX_WH // BATTERY_CAPACITY_STEP_WH,
                endpoint=True,
            )
        )
        power = BATTERY_POWER_STEP_W * int(
            rng.integers(
                BATTERY_POWER_MIN_W // BATTERY_POWER_STEP_W,
                BATTERY_POWER_MAX_W // BATTERY_POWER_STEP_W,
                endpoint=True,
            )
        )
        battery = BatterySpec(
            capacity_wh=capacity,
            max_charge_w=power,
            max_discharge_w=power,
            round_trip_permille=BATTERY_ROUND_TRIP_PERMILLE,
            min_soc_wh=capacity * BATTERY_MIN_SOC_PERMILLE // 1000,
        )
        spec = specs[i]
        result[i] = HouseholdSpec(
            agent_id=spec.agent_id,
            pv_peak_w=spec.pv_peak_w,
            annual_demand_wh=spec.annual_demand_wh,
            battery=battery,
        )
    return tuple(result)


def build_scenario(
    *,
    households: int,
    days: int,
    seed: int,
    pv_share: float = 0.4,
    battery_share: float = 0.0,
    start: datetime = DEFAULT_START,
    history_days: int = 28,
    interval_s: int = 900,
    latitude_deg: float = WEATHER_SITE_LATITUDE_DEG,
    longitude_deg: float = WEATHER_SITE_LONGITUDE_DEG,
) -> Scenario:
    """Build ``households`` profiles over ``history_days + days`` days from ``start``.

    ``start`` must be timezone-aware and a multiple of ``interval_s`` after the
    epoch; it becomes :attr:`Scenario.start` (start of the history).
    ``interval_s`` must divide 3600.  The site's local standard time is
    UTC + ``round(longitude_deg / 15)`` h (no daylight saving); the TMY weather
    and the BDEW profile are read on that local clock, so a site far from the
    weather station gets the station's weather at the same local time.
    """
    start_utc = _check_scenario_args(
        households=households,
        days=days,
        seed=seed,
        pv_share=pv_share,
        start=start,
        history_days=history_days,
        interval_s=interval_s,
        latitude_deg=latitude_deg,
        longitude_deg=longitude_deg,
    )
    start_epoch_s = _epoch_seconds(start_utc)
    specs = make_households(households, seed=seed, pv_share=pv_share, battery_share=battery_share)
    interval_count = (history_days + days) * 86_400 // interval_s
    utc_offset_s = round(longitude_deg / 15.0) * 3600

    demand = demand_cumulative(start_epoch_s + utc_offset_s, interval_count, interval_s)
    pv = _UnitPv(
        PvModel.create(
            start_epoch_s=start_epoch_s,
            interval_count=interval_count,
            interval_s=interval_s,
            utc_offset_s=utc_offset_s,
            latitude_deg=latitude_deg,
            longitude_deg=longitude_deg,
        )
        if any(spec.pv_peak_w > 0 for spec in specs)
        else None,
        interval_count,
    )
    profiles = tuple(
        _profile(spec, _rng(seed, _STREAM_PROFILE, i), demand, pv) for i, spec in enumerate(specs)
    )
    return Scenario(
        start=start_utc,
        interval_s=interval_s,
        history_intervals=history_days * 86_400 // interval_s,
        households=profiles,
    )


def _check_scenario_args(
    *,
    households: int,
    days: int,
    seed: int,
    pv_share: float,
    start: datetime,
    history_days: int,
    interval_s: int,
    latitude_deg: float,
    longitude_deg: float,
) -> datetime:
    """``start`` in UTC once every argument of :func:`build_scenario` is checked
    (ValueError naming the first that is not)."""
    _check_count(households)
    _check_seed(seed)
    _check_pv_share(pv_share)
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if history_days < 0:
        raise ValueError(f"history_days must be >= 0, got {history_days}")
    if interval_s <= 0 or 3600 % interval_s != 0:
        raise ValueError(f"interval_s must be a positive divisor of 3600, got {interval_s}")
    if not -90.0 <= latitude_deg <= 90.0:
        raise ValueError(f"latitude_deg must be in [-90, 90], got {latitude_deg}")
    if not -180.0 <= longitude_deg <= 180.0:
        raise ValueError(f"longitude_deg must be in [-180, 180], got {longitude_deg}")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, got {start!r}")
    start_utc = start.astimezone(UTC)
    if start_utc.microsecond != 0 or _epoch_seconds(start_utc) % interval_s != 0:
        raise ValueError(f"start must be aligned to interval_s={interval_s}, got {start!r}")
    return start_utc


class _UnitPv:
    """The PV energy per Wp of each orientation, computed once per orientation (none
    when no household has PV)."""

    def __init__(self, model: PvModel | None, interval_count: int) -> None:
        self._model = model
        self._cache: dict[tuple[int, int], FloatArray] = {}
        self.zeros: tuple[int, ...] = (0,) * interval_count

    def wh(self, orientation: tuple[int, int], peak_w: int) -> tuple[int, ...]:
        if self._model is None or peak_w <= 0:
            return self.zeros
        unit = self._cache.get(orientation)
        if unit is None:
            tilt_deg, azimuth_deg = orientation
            unit = self._model.unit_interval_wh(tilt_deg=tilt_deg, azimuth_deg=azimuth_deg)
            self._cache[orientation] = unit
        return _round_wh(unit * float(peak_w))


def _profile(
    spec: HouseholdSpec, rng: np.random.Generator, demand: DemandCumulative, pv: _UnitPv
) -> HouseholdProfile:
    """One household's profiles from its own stream, drawn in this order: orientation,
    demand shift, noise."""
    orientation = draw_orientation(rng)
    demand_wh = _round_wh(demand.draw_shares(rng) * float(spec.annual_demand_wh))
    return HouseholdProfile(
        spec=spec, demand_wh=demand_wh, pv_wh=pv.wh(orientation, spec.pv_peak_w)
    )


# --------------------------------------------------------------------------- helpers


def _round_wh(values: FloatArray) -> tuple[int, ...]:
    """Round energies to integer Wh, clamping negatives (float noise) to 0."""
    rounded = np.maximum(np.rint(values), 0.0).astype(np.int64)
    return tuple(rounded.tolist())


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


def _epoch_seconds(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


def _check_count(n: int) -> None:
    if n < 1:
        raise ValueError(f"the number of households must be >= 1, got {n}")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _check_pv_share(share: float, *, name: str = "pv_share") -> None:
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {share}")
