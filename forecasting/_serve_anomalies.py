"""``forecast serve``'s anomaly checks after a fit, over the household's logged readings."""

from __future__ import annotations

from collections.abc import Mapping

from wattmesh.broker.messages import ReadingBody
from wattmesh.forecasting.anomaly import (
    AnomalyFlag,
    forecast_deviation,
    night_export_flags,
    short_delivery_flags,
)
from wattmesh.forecasting.history import StoredFit, series_from_readings

__all__ = ["flags_after_fit"]


def flags_after_fit(
    agent: str,
    rows: list[tuple[int, bool, ReadingBody]],
    previous: StoredFit | None,
    interval_s: int,
    stand_in: str,
    *,
    settled: Mapping[int, tuple[int, int]] | None = None,
) -> list[AnomalyFlag]:
    """Night export over the logged readings (the flagged ones left out), short delivery
    over the logged settlements (``{interval: (export Wh, sold Wh)}``), and the demand
    logged since the ``previous`` fit against that fit's band (unless the ``stand_in``
    model made it, or the band does not cover it all)."""
    step = interval_s
    readings = {r.meter_time - r.meter_time % step: r for _, flagged, r in rows if not flagged}
    flags = night_export_flags(agent, readings, interval_s=step)
    flags += short_delivery_flags(agent, settled or {}, interval_s=step)
    if previous is None or previous.demand.model == stand_in:
        return flags
    band = previous.demand
    since = [(False, r) for at, r in sorted(readings.items()) if at >= band.start_s]
    start, demand, _pv = series_from_readings(since, step)
    offset = (start - band.start_s) // step
    if demand and offset >= 0 and offset + len(demand) <= len(band.p10_wh):
        cut = slice(offset, offset + len(demand))
        flags += forecast_deviation(
            agent, start_s=start, interval_s=step, actual_wh=demand,
            p10_wh=band.p10_wh[cut], p90_wh=band.p90_wh[cut],
        )  # fmt: skip
    return flags
