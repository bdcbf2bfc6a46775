"""Prediction intervals: empirical quantiles of a model's own day-ahead errors, clipped
(``wattmesh simulate``'s built-in forecaster's bands, by the one implementation in
``forecasting._intervals``)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from wattmesh.forecasting._fit import (
    MIN_PER_WINDOW,
    FitJob,
    day_ahead_calib,
    fit_builtin,
    fit_household,
)
from wattmesh.forecasting._intervals import (
    PointRun,
    QuantileForecast,
    quantile,
    to_quantile_forecast,
)
from wattmesh.forecasting._models import Forecast, Series, night_slots, seasonal_naive

DAY = 96
STEP = 900


def _noisy_demand(days: int, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [200 + 150 * (60 <= i % DAY < 80) + rng.randint(-60, 60) for i in range(days * DAY)]


def _pv(days: int, seed: int = 4) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(50, 400) if 28 <= i % DAY < 72 else 0 for i in range(days * DAY)]


def _builtin(
    history: Sequence[int],
    calib: Sequence[float],
    point: float,
    *,
    pv: bool = False,
    capacity_wh: int | None = None,
) -> QuantileForecast:
    """A day's band around ``point`` as the built-in forecaster makes it: residuals
    ``history - calib`` over the history's last intervals, pooled within an hour."""
    series = Series(0, STEP, tuple(history))
    return to_quantile_forecast(
        PointRun((point,) * DAY, tuple(calib), "x"), history_wh=history,
        start_epoch_s=series.end_epoch_s, interval_s=STEP, season=DAY, upper_wh=capacity_wh,
        shift_median=False, pool_slots=DAY // 24, min_per_window=MIN_PER_WINDOW,
        zero_slots=night_slots(series, season_intervals=DAY) if pv else (),
    )  # fmt: skip


def test_quantile_interpolates_between_order_statistics() -> None:
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.1)
    assert quantile([5], 0.9) == 5
    assert quantile(list(range(11)), 0.1) == 1.0
    assert quantile([0, 10], 0.25) == 2.5


def test_residuals_are_the_models_own_day_ahead_errors() -> None:
    series = Series(0, STEP, tuple(_noisy_demand(4)))

    def naive(s: Series, h: int) -> Forecast:
        return seasonal_naive(s, h, season_intervals=DAY, kind="demand")

    calib = day_ahead_calib(series, naive, season=DAY, days=7)
    assert len(calib) == 3 * DAY  # the first day has no day before it
    values = series.values_wh
    # each day's forecast: the day before it, slot by slot
    assert calib == tuple(float(v) for v in values[: 3 * DAY])


def test_offsets_are_per_slot_when_the_windows_are_full_and_pooled_otherwise() -> None:
    history = [1_000] * 3 * DAY
    wide = [1_000 - (100 if 40 <= i % DAY < 50 else 1) for i in range(3 * DAY)]  # 3 per slot
    band = _builtin(history, wide, 500.0)
    assert (band.p10_wh[45], band.p90_wh[45]) == (500, 600)  # its window: only the wide slots
    assert (band.p10_wh[0], band.p90_wh[0]) == (500, 501)
    few = _builtin(history, [1_005.0, 995.0], 500.0)  # errors -5 and 5: all pooled
    assert {(lo, hi) for lo, hi in zip(few.p10_wh, few.p90_wh, strict=True)} == {(496, 504)}


def test_bands_are_ordered_and_clipped_at_zero_night_and_capacity() -> None:
    history = _pv(3)
    calib = [v + (500 if i < DAY else -500) for i, v in enumerate(history)]  # errors -+500
    band = _builtin(history, calib, 300.0, pv=True, capacity_wh=350)
    low, mid, high = band.p10_wh, band.p50_wh, band.p90_wh
    for slot in range(DAY):
        if not 28 <= slot < 72:  # night: exactly zero
            assert (low[slot], mid[slot], high[slot]) == (0, 0, 0)
        else:
            assert (low[slot], mid[slot], high[slot]) == (0, 300, 350)


def test_fitted_bands_cover_about_eighty_percent_of_the_next_days() -> None:
    values = _noisy_demand(24)
    train, test = values[: 21 * DAY], values[21 * DAY :]
    fit = fit_builtin(
        Series(0, STEP, tuple(train)), 3 * DAY, "demand", "auto", min_history=2 * DAY,
        capacity_wh=None,
    )  # fmt: skip
    assert fit.model in {"seasonal_naive", "same_slot_mean"}
    inside = sum(lo <= a <= hi for lo, a, hi in zip(fit.p10_wh, test, fit.p90_wh, strict=True))
    assert 0.65 <= inside / len(test) <= 0.95
    assert all(lo <= m <= hi for lo, m, hi in zip(fit.p10_wh, fit.p50_wh, fit.p90_wh, strict=True))


def test_auto_selects_by_backtest_and_says_what_it_used() -> None:
    # a repeating day plus noise: the 7-day mean beats yesterday's copy
    fit = fit_builtin(
        Series(0, STEP, tuple(_noisy_demand(14))), DAY, "demand", "auto", min_history=2 * DAY,
        capacity_wh=None,
    )  # fmt: skip
    assert (fit.model, fit.version, fit.fallback) == ("same_slot_mean", "same_slot_mean/1", None)
    naive = fit_builtin(
        Series(0, STEP, tuple(_noisy_demand(14))), DAY, "demand", "naive", min_history=2 * DAY,
        capacity_wh=None,
    )  # fmt: skip
    assert naive.model == "seasonal_naive"


def test_a_household_without_pv_gets_exact_zeros_and_short_history_a_marked_mean() -> None:
    job = FitJob("h1", 0, STEP, tuple(_noisy_demand(1)[:10]), (0,) * 10, steps=4)
    demand, pv = fit_household(job)
    assert (pv.model, pv.p10_wh, pv.p90_wh) == ("zero", (0,) * 4, (0,) * 4)
    assert demand.model == "history_mean" and demand.fallback is not None
    assert demand.p10_wh[0] < demand.p50_wh[0] < demand.p90_wh[0]  # its spread, not zero
