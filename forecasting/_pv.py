"""PV physics for the models: clear-sky PV power and the clear-sky-index forecast.

With a :class:`PvSite`, the clear-sky power comes from pvlib (Ineichen clear sky with the
Linke turbidity tables pvlib ships, Hay-Davies transposition onto the plane of the array,
PVWatts with 14 % system losses and a 96 % inverter, at each interval's midpoint), capped at
the capacity. Without a site it is the envelope of the last two weeks: per slot of the day,
the highest output seen. pvlib is imported only when a site is given.

The clear-sky-index model forecasts ``clear-sky power x k``, where ``k`` is the energy-weighted
clear-sky index of the days before the origin; with a weather provider's irradiance it takes
each interval's own index from the irradiance instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wattmesh.forecasting._baselines import history_mean
from wattmesh.forecasting._context import Job, PvSite
from wattmesh.forecasting._intervals import PointRun

__all__ = ["clearsky_index", "clearsky_wh", "site_clearsky_wh"]

INDEX_DAYS = 1
"""Days whose energy-weighted clear-sky index forecasts the next day (1 beat 2 and 3 on the
tuning months: the weather persists)."""
ENVELOPE_DAYS = 14
_LOSSES = 0.14
_INVERTER_EFFICIENCY = 0.96


def site_clearsky_wh(
    site: PvSite, *, capacity_w: int, start_epoch_s: int, interval_s: int, count: int
) -> tuple[list[float], list[float]]:
    """Clear-sky PV energy (Wh per interval) and clear-sky GHI (W/m2) from pvlib."""
    import pandas as pd
    import pvlib

    times = pd.to_datetime(
        [start_epoch_s + i * interval_s + interval_s // 2 for i in range(count)], unit="s", utc=True
    )
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, altitude=site.altitude_m)
    sky = loc.get_clearsky(times, model="ineichen")
    sun = loc.get_solarposition(times)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt_deg,
        site.azimuth_deg,
        sun["apparent_zenith"],
        sun["azimuth"],
        dni=sky["dni"],
        ghi=sky["ghi"],
        dhi=sky["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(times),
        model="haydavies",
    )
    poa_w_m2 = poa["poa_global"].fillna(0.0).clip(lower=0.0)
    cell_c = 20.0 + 0.03 * poa_w_m2
    dc_w = pvlib.pvsystem.pvwatts_dc(poa_w_m2, cell_c, capacity_w, -0.004) * (1 - _LOSSES)
    ac_w = (dc_w * _INVERTER_EFFICIENCY).clip(lower=0.0, upper=capacity_w)
    to_wh = interval_s / 3600
    energy = [float(w) * to_wh for w in ac_w.to_numpy()]
    ghi = [float(g) for g in sky["ghi"].fillna(0.0).to_numpy()]
    return energy, ghi


def _envelope_wh(job: Job) -> list[float]:
    values = job.values
    n = len(values)
    season = job.season
    profile = [0.0] * season
    for i in range(max(0, n - ENVELOPE_DAYS * season), n):
        slot = i % season
        profile[slot] = max(profile[slot], float(values[i]))
    return [profile[i % season] for i in range(n + job.horizon)]


def clearsky_wh(job: Job) -> list[float]:
    """Clear-sky PV energy for the history and the horizon (memoised per job)."""

    def make() -> list[float]:
        site, capacity = job.ctx.site, job.ctx.capacity_w
        if site is None or capacity is None:
            return _envelope_wh(job)
        energy, ghi = site_clearsky_wh(
            site,
            capacity_w=capacity,
            start_epoch_s=job.history.start_epoch_s,
            interval_s=job.history.interval_s,
            count=len(job.values) + job.horizon,
        )
        job.memo("clearsky_ghi", lambda: ghi)
        return energy

    result: list[float] = job.memo("clearsky_wh", make)
    return result


def _day_index(values: Sequence[int], sky: Sequence[float], end: int, season: int) -> float | None:
    """Energy-weighted clear-sky index of the ``INDEX_DAYS`` days before ``end``."""
    begin = max(0, end - INDEX_DAYS * season)
    produced = sum(values[begin:end])
    possible = sum(sky[begin:end])
    return produced / possible if possible > 0 else None


def _weather_index(job: Job, sky: Sequence[float]) -> list[float | None] | None:
    """Per-interval clear-sky index from the provider's irradiance, if it has any."""
    weather = job.weather()
    if weather is None or job.ctx.site is None or job.ctx.capacity_w is None:
        return None
    clear_ghi: list[float] = job.memo("clearsky_ghi", list)
    out: list[float | None] = []
    for g, c in zip(weather.ghi_w_m2, clear_ghi, strict=False):
        out.append(None if g is None or c < 20.0 else min(g / c, 1.2))
    return out if any(v is not None for v in out) else None


def clearsky_index(job: Job, *, model: str) -> PointRun:
    """Clear-sky PV times the recent clear-sky index (see the module docstring)."""
    values = job.values
    n = len(values)
    season = job.season
    if n < season:
        return history_mean(job, model, f"history of {n} intervals is shorter than one day")
    sky = clearsky_wh(job)
    index = _weather_index(job, sky)
    recent = _day_index(values, sky, n, season) or 0.0

    def at(i: int, origin_index: float) -> float:
        k = index[i] if index is not None and index[i] is not None else origin_index
        return float(k or 0.0) * sky[i]

    forecast = tuple(at(n + h, recent) for h in range(job.horizon))
    m = max(0, min(job.calib_len, n - season))
    calib: list[float] = []
    for i in range(n - m, n):
        origin = n + ((i - n) // season) * season
        calib.append(at(i, _day_index(values, sky, origin, season) or 0.0))
    if not all(math.isfinite(v) for v in forecast):
        raise ValueError("non-finite clear-sky forecast")
    return PointRun(forecast, tuple(calib), model=model)
