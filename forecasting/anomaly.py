"""Anomaly detectors over per-interval integer series: night export, short delivery, deviation.

Pure functions, no I/O. Each returns :class:`AnomalyFlag` s, one per episode (a run of
intervals that break the rule), with the household, the episode's first interval, the
kind, a reason, a score in [0, 1] (1: as strong as the rule's scale measures; the scale
is each detector's constant) and the evidence window ``[window_start, window_end)``.

- ``night_export``: grid export in an interval where the household's PV cannot produce
  (clear-sky PV 0), from a household whose only generation is PV (no battery). Night
  comes from the same notion the PV models use (:mod:`forecasting._pv`): clear-sky PV
  from pvlib when the site is known (:func:`night_from_clearsky`), else the household's
  own PV history per slot of the day (:func:`night_from_history`: a slot is night when PV
  was 0 on at least ``NIGHT_DAY_SHARE`` of the days, a majority rather than the models'
  envelope maximum, which a single faulty night would poison).
- ``short_delivery``: over a window of ``SHORT_WINDOW_DAYS`` days, metered export below
  ``SHORT_RATIO`` of the energy sold peer to peer (at least ``SHORT_MIN_SOLD_WH`` sold),
  on every one of the window's days that sold something: short, and kept short.
- ``forecast_deviation``: the reading outside ``p10 .. p90`` by more than
  ``DEVIATION_MARGIN`` of the band's width plus ``DEVIATION_MIN_WH``, for at least
  ``DEVIATION_RUN`` consecutive intervals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wattmesh.broker.forecast_bodies import MAX_REASON_CHARS
from wattmesh.broker.messages import AnomalyBody, ReadingBody

__all__ = [
    "DEVIATION_MARGIN",
    "DEVIATION_MIN_WH",
    "DEVIATION_RUN",
    "KINDS",
    "NIGHT_DAY_SHARE",
    "NIGHT_EXPORT_MIN_WH",
    "NIGHT_EXPORT_SCALE_WH",
    "SHORT_MIN_SOLD_WH",
    "SHORT_RATIO",
    "SHORT_WINDOW_DAYS",
    "AnomalyFlag",
    "anomaly_body",
    "forecast_deviation",
    "night_export",
    "night_export_flags",
    "night_from_clearsky",
    "night_from_history",
    "short_delivery",
    "short_delivery_flags",
]

NIGHT_EXPORT = "night_export"
SHORT_DELIVERY = "short_delivery"
FORECAST_DEVIATION = "forecast_deviation"
KINDS = (NIGHT_EXPORT, SHORT_DELIVERY, FORECAST_DEVIATION)

NIGHT_EXPORT_MIN_WH = 5
"""Export per interval at night below this is meter noise, not a flag."""
NIGHT_EXPORT_SCALE_WH = 200
"""An episode exporting this much at night scores 1."""
NIGHT_DAY_SHARE = 0.75
"""History rule: a slot of the day is night if PV was 0 on at least this share of days."""
SHORT_WINDOW_DAYS = 3
SHORT_RATIO = 0.5
SHORT_MIN_SOLD_WH = 100  # Wh: well above meter resolution; 500 missed 4 of 5 faults (BENCHMARKS.md)
DEVIATION_MARGIN = 0.5
DEVIATION_MIN_WH = 100
DEVIATION_RUN = 8


@dataclass(frozen=True)
class AnomalyFlag:
    """One episode of one household that breaks a detector's rule (times in epoch s)."""

    agent: str
    interval: int  # the episode's first interval
    kind: str
    reason: str
    score: float  # in [0, 1]
    window_start: int  # evidence window [window_start, window_end)
    window_end: int

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "interval": self.interval,
            "kind": self.kind,
            "reason": self.reason,
            "score_milli": round(self.score * 1000),
            "window_start": self.window_start,
            "window_end": self.window_end,
        }


def _runs(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs ``[begin, end)`` of True."""
    out: list[tuple[int, int]] = []
    begin: int | None = None
    for i, v in enumerate([*mask, False]):
        if v and begin is None:
            begin = i
        elif not v and begin is not None:
            out.append((begin, i))
            begin = None
    return out


def night_from_clearsky(clearsky_wh: Sequence[float]) -> list[bool]:
    """Night where clear-sky PV (:func:`forecasting._pv.site_clearsky_wh`) is 0."""
    return [v <= 0.0 for v in clearsky_wh]


def night_from_history(pv_wh: Sequence[int], *, season: int, count: int) -> list[bool]:
    """Night mask for ``count`` intervals aligned with ``pv_wh`` (same start, ``season``
    intervals a day): per slot, PV 0 on at least ``NIGHT_DAY_SHARE`` of the history's days.
    A household without PV history (all 0) has night all day."""
    zeros = [0] * season
    days = [0] * season
    for i, v in enumerate(pv_wh):
        days[i % season] += 1
        zeros[i % season] += v <= 0
    night = [days[s] == 0 or zeros[s] >= NIGHT_DAY_SHARE * days[s] for s in range(season)]
    return [night[i % season] for i in range(count)]


def night_export(
    agent: str,
    *,
    start_s: int,
    interval_s: int,
    export_wh: Sequence[int],
    night: Sequence[bool],
    has_battery: bool,
) -> list[AnomalyFlag]:
    """Episodes of export at night from a household whose only generation is PV."""
    if has_battery:
        return []
    bad = [n and e >= NIGHT_EXPORT_MIN_WH for e, n in zip(export_wh, night, strict=False)]
    flags = []
    for begin, end in _runs(bad):
        total = sum(export_wh[begin:end])
        flags.append(
            AnomalyFlag(
                agent,
                start_s + begin * interval_s,
                NIGHT_EXPORT,
                f"exported {total} Wh over {end - begin} interval(s) while clear-sky PV is 0",
                min(1.0, total / NIGHT_EXPORT_SCALE_WH),
                start_s + begin * interval_s,
                start_s + end * interval_s,
            )
        )
    return flags


def short_delivery(
    agent: str,
    *,
    start_s: int,
    interval_s: int,
    export_wh: Sequence[int],
    sold_wh: Sequence[int],
) -> list[AnomalyFlag]:
    """Windows of ``SHORT_WINDOW_DAYS`` whole days (from ``start_s``, one flag per run of
    overlapping windows) where export stayed below ``SHORT_RATIO`` of the P2P energy sold
    on every day that sold, and over the window. Score: ``1 - delivered / sold``."""
    season = 86_400 // interval_s
    n_days = min(len(export_wh), len(sold_wh)) // season
    day_sold = [sum(sold_wh[d * season : (d + 1) * season]) for d in range(n_days)]
    day_out = [sum(export_wh[d * season : (d + 1) * season]) for d in range(n_days)]
    short_window: list[bool] = []
    for d in range(n_days - SHORT_WINDOW_DAYS + 1):
        days = range(d, d + SHORT_WINDOW_DAYS)
        sold = sum(day_sold[k] for k in days)
        out = sum(day_out[k] for k in days)
        each = all(day_out[k] < SHORT_RATIO * day_sold[k] for k in days if day_sold[k] > 0)
        short_window.append(sold >= SHORT_MIN_SOLD_WH and out < SHORT_RATIO * sold and each)
    flags = []
    for begin, end in _runs(short_window):
        days = range(begin, end - 1 + SHORT_WINDOW_DAYS)
        sold = sum(day_sold[k] for k in days)
        out = sum(day_out[k] for k in days)
        flags.append(
            AnomalyFlag(
                agent,
                start_s + begin * season * interval_s,
                SHORT_DELIVERY,
                f"delivered {out} Wh of {sold} Wh sold over {len(days)} days",
                max(0.0, min(1.0, 1.0 - out / sold)),
                start_s + days.start * season * interval_s,
                start_s + days.stop * season * interval_s,
            )
        )
    return flags


def short_delivery_flags(
    agent: str, settled: Mapping[int, tuple[int, int]], *, interval_s: int
) -> list[AnomalyFlag]:
    """Short-delivery episodes in one household's settlements: ``{interval: (metered
    export Wh, P2P sold Wh)}`` as the ledger logged them, its days counted from midnight
    UTC (intervals without a settlement count as 0 and 0)."""
    if not settled:
        return []
    season = 86_400 // interval_s
    first = min(settled)
    start = first - (first // interval_s % season) * interval_s  # midnight UTC
    count = (max(settled) - start) // interval_s + 1
    export, sold = [0] * count, [0] * count
    for at, (out, s) in settled.items():
        k = (at - start) // interval_s
        export[k], sold[k] = out, s
    return short_delivery(
        agent, start_s=start, interval_s=interval_s, export_wh=export, sold_wh=sold
    )


def forecast_deviation(
    agent: str,
    *,
    start_s: int,
    interval_s: int,
    actual_wh: Sequence[int],
    p10_wh: Sequence[int],
    p90_wh: Sequence[int],
    target: str = "demand",
) -> list[AnomalyFlag]:
    """Runs of at least ``DEVIATION_RUN`` intervals outside the band by the margin.
    Score: ``1 - exp(-m)``, ``m`` the mean excess beyond the band over the band's width
    (at least ``DEVIATION_MIN_WH``)."""
    excess: list[float] = []
    for a, lo, hi in zip(actual_wh, p10_wh, p90_wh, strict=False):
        width = max(hi - lo, 0)
        pad = DEVIATION_MARGIN * width + DEVIATION_MIN_WH
        if a > hi + pad:
            excess.append((a - hi) / max(width, DEVIATION_MIN_WH))
        elif a < lo - pad:
            excess.append((lo - a) / max(width, DEVIATION_MIN_WH))
        else:
            excess.append(0.0)
    flags = []
    for begin, end in _runs([e > 0 for e in excess]):
        if end - begin < DEVIATION_RUN:
            continue
        mean = sum(excess[begin:end]) / (end - begin)
        flags.append(
            AnomalyFlag(
                agent,
                start_s + begin * interval_s,
                FORECAST_DEVIATION,
                f"{target} outside p10..p90 by more than the margin for {end - begin} intervals",
                1.0 - math.exp(-mean),
                start_s + begin * interval_s,
                start_s + end * interval_s,
            )
        )
    return flags


def night_export_flags(
    agent: str, readings: Mapping[int, ReadingBody], *, interval_s: int
) -> list[AnomalyFlag]:
    """Night-export episodes in one household's logged readings (by signed interval)."""
    times = sorted(readings)
    if len(times) < 2:
        return []
    start = times[0]
    count = (times[-1] - start) // interval_s
    export = [0] * count
    pv = [0] * count
    for a, b in itertools.pairwise(times):
        if b - a != interval_s:
            continue
        k = (a - start) // interval_s
        export[k] = max(readings[b].export_wh - readings[a].export_wh, 0)
        pv[k] = max(readings[b].pv_wh - readings[a].pv_wh, 0)
    season = 86_400 // interval_s
    offset = (start // interval_s) % season  # slots of the day from midnight UTC
    night = night_from_history([0] * offset + pv, season=season, count=offset + count)[offset:]
    battery = any(r.battery_in_wh is not None for r in readings.values())
    return night_export(
        agent, start_s=start, interval_s=interval_s, export_wh=export, night=night,
        has_battery=battery,
    )  # fmt: skip


def anomaly_body(flag: AnomalyFlag) -> AnomalyBody:
    """The wire body of a flag (score in thousandths), to be signed by the forecaster."""
    return AnomalyBody(
        agent=flag.agent,
        anomaly=flag.kind,
        interval=flag.interval,
        reason=flag.reason[:MAX_REASON_CHARS],
        score_milli=round(flag.score * 1000),
        window_start=flag.window_start,
        window_end=flag.window_end,
    )
