"""The anomaly detectors (forecasting.anomaly): exact flags on small hand-made series."""

from __future__ import annotations

import math

from wattmesh.forecasting.anomaly import (
    AnomalyFlag,
    forecast_deviation,
    night_export,
    night_from_clearsky,
    night_from_history,
    short_delivery,
)

T0 = 1_000_000 * 900  # aligned epoch s


def test_night_from_history_majority_per_slot() -> None:
    # 4 slots a day, 4 days; slot 2 produces daily, slot 1 once (a faulty night: still night)
    pv = [0, 0, 50, 0] * 3 + [0, 30, 50, 0]
    assert night_from_history(pv, season=4, count=8) == [True, True, False, True] * 2
    assert night_from_history([0] * 8, season=4, count=4) == [True] * 4
    assert night_from_clearsky([0.0, 1.5, 0.0]) == [True, False, True]


def test_night_export_flags_each_episode() -> None:
    night = [True, True, False, False, True, True, True, True]
    export = [0, 4, 900, 800, 60, 150, 0, 250]
    flags = night_export(
        "h1", start_s=T0, interval_s=900, export_wh=export, night=night, has_battery=False
    )
    assert flags == [
        AnomalyFlag(
            "h1", T0 + 4 * 900, "night_export",
            "exported 210 Wh over 2 interval(s) while clear-sky PV is 0",
            1.0, T0 + 4 * 900, T0 + 6 * 900,
        ),
        AnomalyFlag(
            "h1", T0 + 7 * 900, "night_export",
            "exported 250 Wh over 1 interval(s) while clear-sky PV is 0",
            1.0, T0 + 7 * 900, T0 + 8 * 900,
        ),
    ]  # fmt: skip
    small = night_export(
        "h1", start_s=T0, interval_s=900, export_wh=[0, 50], night=[True, True], has_battery=False
    )
    assert [f.score for f in small] == [0.25]
    assert (
        night_export(
            "h1", start_s=T0, interval_s=900, export_wh=export, night=night, has_battery=True
        )
        == []
    )


def test_short_delivery_needs_every_selling_day_short() -> None:
    season = 96
    sold = [0] * (5 * season)
    export = [0] * (5 * season)
    for d in range(5):
        sold[d * season + 40] = 1000
        export[d * season + 40] = 1000 if d == 0 else 300  # days 1..4 deliver 30 %
    flags = short_delivery("h2", start_s=T0, interval_s=900, export_wh=export, sold_wh=sold)
    assert flags == [
        AnomalyFlag(
            "h2", T0 + 1 * 86_400, "short_delivery",
            "delivered 1200 Wh of 4000 Wh sold over 4 days",
            1.0 - 1200 / 4000, T0 + 86_400, T0 + 5 * 86_400,
        )
    ]  # fmt: skip
    export[3 * season + 40] = 1000  # one honest day breaks the run of short windows
    assert short_delivery("h2", start_s=T0, interval_s=900, export_wh=export, sold_wh=sold) == []


def test_forecast_deviation_needs_a_sustained_run() -> None:
    n = 20
    p10, p90 = [100] * n, [300] * n  # width 200: flag above 300 + 100 + 100 = 500
    actual = [200] * n
    for i in range(4, 12):
        actual[i] = 700  # 8 intervals, excess (700-300)/200 = 2
    actual[15] = 900  # a single spike: not sustained
    flags = forecast_deviation(
        "h3", start_s=T0, interval_s=900, actual_wh=actual, p10_wh=p10, p90_wh=p90
    )
    assert flags == [
        AnomalyFlag(
            "h3", T0 + 4 * 900, "forecast_deviation",
            "demand outside p10..p90 by more than the margin for 8 intervals",
            1.0 - math.exp(-2.0), T0 + 4 * 900, T0 + 12 * 900,
        )
    ]  # fmt: skip
    actual[8] = 500  # at the margin: not outside, the run breaks into two of 4
    assert (
        forecast_deviation(
            "h3", start_s=T0, interval_s=900, actual_wh=actual, p10_wh=p10, p90_wh=p90
        )
        == []
    )
