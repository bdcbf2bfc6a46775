"""Simulated households for ``wattmesh simulate``.

A scenario is a fixed set of households, each with a demand profile and a PV
production profile in integer watt-hours per interval, covering a history
period (for forecasters to learn from) followed by the simulated period.

* Demand: the BDEW 2025 household standard load profile (H25, the successor
  of H0, from ``demandlib``), applied to the site's local standard time,
  scaled so that one calendar year sums to the household's annual demand,
  shifted in time by up to an hour per household and multiplied by seeded
  log-normal noise (mean 1) per interval.
* PV: PVWatts-style model (``pvlib``) driven by the Greensboro NC TMY3 file
  shipped inside pvlib (hourly, local standard time), Hay-Davies transposition,
  physical IAM, SAPM cell temperature, 14 % system losses and a PVWatts
  inverter sized at the peak power.  Each household gets a seeded tilt and
  azimuth from a small discrete set, so the per-Wp profile is computed once
  per distinct orientation and scaled.

Nothing is downloaded: all data comes from files inside installed packages.
Everything is a pure function of the arguments: the same arguments give an
identical scenario.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib
from demandlib.bdew import H25

from agents.battery import BatterySpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_START = datetime(2025, 6, 2, tzinfo=UTC)
"""Default start of the history period (first interval)."""

WEATHER_SITE_LATITUDE_DEG = 36.1
"""Latitude of the TMY3 weather station (Greensboro Piedmont Triad Intl, NC)."""
WEATHER_SITE_LONGITUDE_DEG = -79.95
"""Longitude of the TMY3 weather station (degrees east)."""

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

DEMAND_NOISE_SIGMA = 0.35
"""Sigma of the per-interval log-normal demand noise (its mean is 1)."""
DEMAND_MAX_SHIFT_S = 3_600
"""Each household's demand profile is shifted by a seeded amount in +-this."""
_DEMAND_SHIFT_STEP_S = 60

_TILTS_DEG = (15, 20, 25, 30, 35, 40)
_AZIMUTH_STEP_DEG = 10
_AZIMUTH_SIGMA_STEPS = 2.5
_AZIMUTH_MIN_DEG = 90
_AZIMUTH_MAX_DEG = 270

_TMY_FILE = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
_TMY_HOURS = 8760
_SLP_STEP_S = 900  # BDEW profiles have 15-minute resolution
_ALBEDO = 0.2
_GAMMA_PDC_PER_C = -0.0037  # PVWatts "standard" module
_SYSTEM_LOSS_FRACTION = 0.14  # PVWatts default total system losses
_INVERTER_ETA_NOM = 0.96
_SAPM_MOUNT = "close_mount_glass_glass"  # rooftop
_DAYS_BEFORE_MONTH = np.array(
    [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64
)  # non-leap year

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


@dataclass(frozen=True)
class _Weather:
    """Hourly TMY3 series in calendar order (row = day_of_year * 24 + hour)."""

    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray
    altitude_m: float


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
    start_epoch_s = _epoch_seconds(start_utc)
    if start_utc.microsecond != 0 or start_epoch_s % interval_s != 0:
        raise ValueError(f"start must be aligned to interval_s={interval_s}, got {start!r}")

    specs = make_households(households, seed=seed, pv_share=pv_share, battery_share=battery_share)
    interval_count = (history_days + days) * 86_400 // interval_s
    utc_offset_s = round(longitude_deg / 15.0) * 3600

    demand_cumulative = _demand_cumulative(start_epoch_s + utc_offset_s, interval_count, interval_s)
    pv_model = (
        _PvModel.create(
            start_epoch_s=start_epoch_s,
            interval_count=interval_count,
            interval_s=interval_s,
            utc_offset_s=utc_offset_s,
            latitude_deg=latitude_deg,
            longitude_deg=longitude_deg,
        )
        if any(spec.pv_peak_w > 0 for spec in specs)
        else None
    )
    unit_pv_cache: dict[tuple[int, int], FloatArray] = {}
    zeros = (0,) * interval_count

    profiles: list[HouseholdProfile] = []
    for i, spec in enumerate(specs):
        rng = _rng(seed, _STREAM_PROFILE, i)
        tilt_deg = _TILTS_DEG[int(rng.integers(len(_TILTS_DEG)))]
        azimuth_deg = _draw_azimuth_deg(rng)
        max_shift_steps = DEMAND_MAX_SHIFT_S // _DEMAND_SHIFT_STEP_S
        shift_s = int(rng.integers(-max_shift_steps, max_shift_steps, endpoint=True)) * (
            _DEMAND_SHIFT_STEP_S
        )
        noise = rng.lognormal(
            mean=-(DEMAND_NOISE_SIGMA**2) / 2.0, sigma=DEMAND_NOISE_SIGMA, size=interval_count
        )
        demand_fraction = demand_cumulative.interval_fractions(shift_s)
        demand = _round_wh(demand_fraction * noise * float(spec.annual_demand_wh))

        if pv_model is not None and spec.pv_peak_w > 0:
            key = (tilt_deg, azimuth_deg)
            unit = unit_pv_cache.get(key)
            if unit is None:
                unit = pv_model.unit_interval_wh(tilt_deg=tilt_deg, azimuth_deg=azimuth_deg)
                unit_pv_cache[key] = unit
            pv: tuple[int, ...] = _round_wh(unit * float(spec.pv_peak_w))
        else:
            pv = zeros
        profiles.append(HouseholdProfile(spec=spec, demand_wh=demand, pv_wh=pv))

    return Scenario(
        start=start_utc,
        interval_s=interval_s,
        history_intervals=history_days * 86_400 // interval_s,
        households=tuple(profiles),
    )


# --------------------------------------------------------------------------- demand


@dataclass(frozen=True)
class _DemandCumulative:
    """Cumulative H25 share of annual energy at 15-minute local-time knots."""

    knot_offsets_s: FloatArray  # knot times relative to the first interval's local start
    cumulative: FloatArray  # share of annual energy consumed before each knot
    interval_count: int
    interval_s: int

    def interval_fractions(self, shift_s: int) -> FloatArray:
        """Share of annual energy per interval, the profile delayed by ``shift_s`` s."""
        bounds = np.arange(self.interval_count + 1, dtype=np.float64) * self.interval_s
        energy = np.interp(bounds - float(shift_s), self.knot_offsets_s, self.cumulative)
        fractions: FloatArray = np.diff(energy)
        return fractions


def _demand_cumulative(
    local_start_s: int, interval_count: int, interval_s: int
) -> _DemandCumulative:
    """Evaluate H25 once over the local calendar year of the start and the window.

    ``local_start_s`` is the first interval's start on the local clock, as
    seconds after 1970-01-01 00:00 local.  The profile is normalised so that
    the calendar year containing the start sums to 1.
    """
    margin_s = DEMAND_MAX_SHIFT_S + _SLP_STEP_S
    window_lo_s = (local_start_s - margin_s) // _SLP_STEP_S * _SLP_STEP_S
    window_hi_s = -(-(local_start_s + interval_count * interval_s + margin_s) // _SLP_STEP_S) * (
        _SLP_STEP_S
    )
    year = datetime.fromtimestamp(local_start_s, tz=UTC).year
    year_lo_s = _epoch_seconds(datetime(year, 1, 1, tzinfo=UTC))
    year_hi_s = _epoch_seconds(datetime(year + 1, 1, 1, tzinfo=UTC))
    lo_s = min(window_lo_s, year_lo_s)
    hi_s = max(window_hi_s, year_hi_s)
    slots = (hi_s - lo_s) // _SLP_STEP_S
    index = pd.date_range(start=pd.Timestamp(lo_s, unit="s"), periods=slots, freq=f"{_SLP_STEP_S}s")
    power = _h25_power(index)
    year_first = (year_lo_s - lo_s) // _SLP_STEP_S
    year_last = (year_hi_s - lo_s) // _SLP_STEP_S
    share = power / float(power[year_first:year_last].sum())
    cumulative = np.concatenate(([0.0], np.cumsum(share)))
    knots = (lo_s - local_start_s + np.arange(slots + 1, dtype=np.int64) * _SLP_STEP_S).astype(
        np.float64
    )
    return _DemandCumulative(
        knot_offsets_s=knots,
        cumulative=cumulative,
        interval_count=interval_count,
        interval_s=interval_s,
    )


def _h25_power(index: pd.DatetimeIndex) -> FloatArray:
    """BDEW H25 mean power per 15-minute slot of the naive local-time ``index``."""
    with warnings.catch_warnings():
        # demandlib 0.2.2 uses pandas' deprecated ``inplace=`` keyword (pandas >= 3.1).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        profile: Any = H25(index)
    values: FloatArray = np.asarray(profile.to_numpy(), dtype=np.float64)
    if values.shape != (len(index),) or not np.all(np.isfinite(values)) or values.min() < 0:
        raise RuntimeError("demandlib H25 returned an unexpected profile")
    return values


# --------------------------------------------------------------------------- PV


@dataclass(frozen=True)
class _PvModel:
    """Sun and weather on a sub-interval grid; per-Wp interval energy per orientation."""

    interval_count: int
    substeps_per_interval: int
    substep_s: int
    sun_up: npt.NDArray[np.bool_]
    solar_zenith_deg: FloatArray  # apparent, only where sun_up
    solar_azimuth_deg: FloatArray
    dni_extra: FloatArray
    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray

    @classmethod
    def create(
        cls,
        *,
        start_epoch_s: int,
        interval_count: int,
        interval_s: int,
        utc_offset_s: int,
        latitude_deg: float,
        longitude_deg: float,
    ) -> _PvModel:
        weather = _read_weather()
        substep_s = math.gcd(interval_s, _SLP_STEP_S)
        per_interval = interval_s // substep_s
        steps = np.arange(interval_count * per_interval, dtype=np.int64)
        substep_start_s = start_epoch_s + steps * substep_s
        # Sub-steps never straddle a clock hour (substep_s divides 3600, start aligned).
        rows = _tmy_rows(substep_start_s + utc_offset_s)
        mid_ns = (substep_start_s * 1_000_000_000 + substep_s * 500_000_000).astype(
            "datetime64[ns]"
        )
        times = pd.DatetimeIndex(mid_ns).tz_localize("UTC")
        solpos: Any = pvlib.solarposition.get_solarposition(
            times,
            latitude_deg,
            longitude_deg,
            altitude=weather.altitude_m,
            temperature=weather.temp_air_c[rows],
        )
        elevation = np.asarray(solpos["apparent_elevation"].to_numpy(), dtype=np.float64)
        sun_up = elevation > 0.0
        up_rows = rows[sun_up]
        day_of_year = np.asarray(times[sun_up].day_of_year, dtype=np.float64)
        dni_extra: Any = pvlib.irradiance.get_extra_radiation(day_of_year)
        return cls(
            interval_count=interval_count,
            substeps_per_interval=per_interval,
            substep_s=substep_s,
            sun_up=sun_up,
            solar_zenith_deg=np.asarray(
                solpos["apparent_zenith"].to_numpy()[sun_up], dtype=np.float64
            ),
            solar_azimuth_deg=np.asarray(solpos["azimuth"].to_numpy()[sun_up], dtype=np.float64),
            dni_extra=np.asarray(dni_extra, dtype=np.float64),
            ghi=weather.ghi[up_rows],
            dni=weather.dni[up_rows],
            dhi=weather.dhi[up_rows],
            temp_air_c=weather.temp_air_c[up_rows],
            wind_speed_m_s=weather.wind_speed_m_s[up_rows],
        )

    def unit_interval_wh(self, *, tilt_deg: int, azimuth_deg: int) -> FloatArray:
        """AC energy per interval in Wh per W of peak power for one orientation."""
        irradiance: Any = pvlib.irradiance.get_total_irradiance(
            surface_tilt=tilt_deg,
            surface_azimuth=azimuth_deg,
            solar_zenith=self.solar_zenith_deg,
            solar_azimuth=self.solar_azimuth_deg,
            dni=self.dni,
            ghi=self.ghi,
            dhi=self.dhi,
            dni_extra=self.dni_extra,
            albedo=_ALBEDO,
            model="haydavies",
        )
        aoi: Any = pvlib.irradiance.aoi(
            tilt_deg, azimuth_deg, self.solar_zenith_deg, self.solar_azimuth_deg
        )
        iam: Any = pvlib.iam.physical(aoi)
        poa_direct = np.asarray(irradiance["poa_direct"], dtype=np.float64)
        poa_diffuse = np.asarray(irradiance["poa_diffuse"], dtype=np.float64)
        poa_global = np.asarray(irradiance["poa_global"], dtype=np.float64)
        effective = np.nan_to_num(poa_direct * np.asarray(iam, dtype=np.float64) + poa_diffuse)
        params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][_SAPM_MOUNT]
        temp_cell: Any = pvlib.temperature.sapm_cell(
            np.nan_to_num(poa_global), self.temp_air_c, self.wind_speed_m_s, **params
        )
        dc: Any = pvlib.pvsystem.pvwatts_dc(
            effective, temp_cell, pdc0=1.0, gamma_pdc=_GAMMA_PDC_PER_C
        )
        dc_after_losses = np.maximum(np.asarray(dc, dtype=np.float64), 0.0) * (
            1.0 - _SYSTEM_LOSS_FRACTION
        )
        ac: Any = pvlib.inverter.pvwatts(
            dc_after_losses, pdc0=1.0 / _INVERTER_ETA_NOM, eta_inv_nom=_INVERTER_ETA_NOM
        )
        power = np.zeros(self.sun_up.shape, dtype=np.float64)
        power[self.sun_up] = np.asarray(ac, dtype=np.float64)
        energy = power.reshape(self.interval_count, self.substeps_per_interval).sum(axis=1)
        result: FloatArray = energy * (self.substep_s / 3600.0)
        return result


def _read_weather() -> _Weather:
    """Read the TMY3 file shipped with pvlib into calendar-ordered hourly arrays.

    TMY3 values are averages over the hour *ending* at the stamp, in local
    standard time; row ``d * 24 + h`` here covers hour ``h`` of (non-leap)
    day of year ``d``.  The typical months come from different years, so the
    series jumps at month edges; those fall at local midnight, when there is no
    irradiance, so only the (night-time) temperature jumps.
    """
    data: Any
    meta: Any
    data, meta = pvlib.iotools.read_tmy3(str(_TMY_FILE), map_variables=True)
    if len(data) != _TMY_HOURS:
        raise RuntimeError(f"{_TMY_FILE} has {len(data)} rows, expected {_TMY_HOURS}")
    date = data["Date (MM/DD/YYYY)"].str.split("/", expand=True).astype(int).to_numpy()
    hour_ending = data["Time (HH:MM)"].str.split(":").str[0].astype(int).to_numpy()
    month = np.asarray(date[:, 0], dtype=np.int64)
    day = np.asarray(date[:, 1], dtype=np.int64)
    key = (_DAYS_BEFORE_MONTH[month - 1] + day - 1) * 24 + (hour_ending - 1)
    if not np.array_equal(np.sort(key), np.arange(_TMY_HOURS)):
        raise RuntimeError(f"{_TMY_FILE} does not hold one value per hour of a year")
    order = np.argsort(key)

    def column(name: str) -> FloatArray:
        values = np.asarray(data[name].to_numpy(), dtype=np.float64)[order]
        return np.maximum(values, 0.0) if name in ("ghi", "dni", "dhi", "wind_speed") else values

    return _Weather(
        ghi=column("ghi"),
        dni=column("dni"),
        dhi=column("dhi"),
        temp_air_c=column("temp_air"),
        wind_speed_m_s=column("wind_speed"),
        altitude_m=float(meta["altitude"]),
    )


def _tmy_rows(local_s: IntArray) -> IntArray:
    """TMY row for each local-clock time (s since 1970-01-01 local); 29 Feb uses 28 Feb."""
    day = (local_s // 86_400).astype("datetime64[D]")
    month_start = day.astype("datetime64[M]")
    month = (month_start.astype(np.int64) % 12) + 1
    day_of_month = (day - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    day_of_month = np.where((month == 2) & (day_of_month == 29), 28, day_of_month)
    hour = (local_s % 86_400) // 3600
    rows: IntArray = (_DAYS_BEFORE_MONTH[month - 1] + day_of_month - 1) * 24 + hour
    return rows


def _draw_azimuth_deg(rng: np.random.Generator) -> int:
    """Azimuth (deg east of north) around south, in steps of 10 deg within [90, 270]."""
    steps = round(float(rng.normal(0.0, _AZIMUTH_SIGMA_STEPS)))
    return min(max(180 + steps * _AZIMUTH_STEP_DEG, _AZIMUTH_MIN_DEG), _AZIMUTH_MAX_DEG)


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
