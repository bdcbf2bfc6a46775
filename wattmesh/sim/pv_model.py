"""PV production of the simulated households (``pvlib``), per Wp of peak power.

A PVWatts-style model driven by the Greensboro NC TMY3 file shipped inside pvlib
(hourly, local standard time): Hay-Davies transposition, physical IAM, SAPM cell
temperature, 14 % system losses and a PVWatts inverter sized at the peak power.
Each household gets a seeded tilt and azimuth from a small discrete set
(:func:`draw_orientation`), so the per-Wp profile is computed once per distinct
orientation (:meth:`PvModel.unit_interval_wh`) and scaled by the caller.

Nothing is downloaded: the weather comes from a file inside the installed pvlib.
Everything is a pure function of the arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WEATHER_SITE_LATITUDE_DEG = 36.1
"""Latitude of the TMY3 weather station (Greensboro Piedmont Triad Intl, NC)."""
WEATHER_SITE_LONGITUDE_DEG = -79.95
"""Longitude of the TMY3 weather station (degrees east)."""

MAX_SUBSTEP_S = 900
"""Sun and weather are evaluated on sub-steps of ``gcd(interval_s, 900)`` seconds."""

_TILTS_DEG = (15, 20, 25, 30, 35, 40)
_AZIMUTH_STEP_DEG = 10
_AZIMUTH_SIGMA_STEPS = 2.5
_AZIMUTH_MIN_DEG = 90
_AZIMUTH_MAX_DEG = 270

_TMY_FILE = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
_TMY_HOURS = 8760
_ALBEDO = 0.2
_GAMMA_PDC_PER_C = -0.0037  # PVWatts "standard" module
_SYSTEM_LOSS_FRACTION = 0.14  # PVWatts default total system losses
_INVERTER_ETA_NOM = 0.96
_SAPM_MOUNT = "close_mount_glass_glass"  # rooftop
_DAYS_BEFORE_MONTH = np.array(
    [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64
)  # non-leap year


@dataclass(frozen=True)
class _Weather:
    """Hourly TMY3 series in calendar order (row = day_of_year * 24 + hour)."""

    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray
    altitude_m: float


@dataclass(frozen=True)
class PvModel:
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
    ) -> PvModel:
        """Sun positions and TMY weather for ``interval_count`` intervals from ``start_epoch_s``.

        ``utc_offset_s`` gives the site's local standard time, on which the TMY
        weather is read; ``start_epoch_s`` must be aligned to ``interval_s``, which
        must divide 3600.
        """
        weather = _read_weather()
        substep_s = math.gcd(interval_s, MAX_SUBSTEP_S)
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


def draw_orientation(rng: np.random.Generator) -> tuple[int, int]:
    """A household's ``(tilt_deg, azimuth_deg)``: tilt first, then azimuth, from ``rng``.

    Tilt from a small discrete set; azimuth (deg east of north) around south, in
    steps of 10 deg within [90, 270].
    """
    tilt_deg = _TILTS_DEG[int(rng.integers(len(_TILTS_DEG)))]
    steps = round(float(rng.normal(0.0, _AZIMUTH_SIGMA_STEPS)))
    azimuth_deg = min(max(180 + steps * _AZIMUTH_STEP_DEG, _AZIMUTH_MIN_DEG), _AZIMUTH_MAX_DEG)
    return tilt_deg, azimuth_deg


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
