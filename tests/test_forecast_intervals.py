"""Prediction intervals: empirical quantiles of a model's own day-ahead errors, clipped."""

from __future__ import annotations

import random

from wattmesh.forecasting._fit import FitJob, fit_builtin, fit_household
from wattmesh.forecasting._models import Forecast, Series, seasonal_naive
from wattmesh.forecasting._quantiles import bands, day_ahead_residuals, quantile, slot_offsets

DAY = 96
STEP = 900


def _noisy_demand(days: int, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [200 + 150 * (60 <= i % DAY < 80) + rng.randint(-60, 60) for i in range(days * DAY)]


def _pv(days: int, seed: int = 4) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(50, 400) if 28 <= i % DAY < 72 else 0 for i in range(days * DAY)]


def test_quantile_interpolates_between_order_statistics() -> None:
    assert quantile([], 0.1) == 0.0
    assert quantile([5], 0.9) == 5
    assert quantile(list(range(11)), 0.1) == 1.0
    assert quantile([0, 10], 0.25) == 2.5


def test_residuals_are_the_models_own_day_ahead_errors() -> None:
    series = Series(0, STEP, tuple(_noisy_demand(4)))

    def naive(s: Series, h: int) -> Forecast:
        return seasonal_naive(s, h, season_intervals=DAY, kind="demand")

    residuals = day_ahead_residuals(series, naive, season_intervals=DAY, days=7)
    assert len(residuals) == 3 * DAY  # the first day has no day before it
    values = series.values_wh
    # the last day's errors: actual minus the day before, slot by slot
    last_day = residuals[:DAY]
    assert last_day == [(i, values[3 * DAY + i] - values[2 * DAY + i]) for i in range(DAY)]


def test_offsets_are_per_slot_when_the_windows_are_full_and_pooled_otherwise() -> None:
    wide = [(slot, 100 if 40 <= slot < 50 else 1) for slot in range(DAY) for _ in range(3)]
    offsets = slot_offsets(wide, season_intervals=DAY, slots=range(DAY))
    assert offsets[45] == (100, 100)  # its window holds only the wide slots
    assert offsets[0] == (1, 1)
    few = [(0, -5), (1, 5)]
    assert slot_offsets(few, season_intervals=DAY, slots=[3, 7]) == {3: (-4, 4), 7: (-4, 4)}


def test_bands_are_ordered_and_clipped_at_zero_night_and_capacity() -> None:
    history = Series(0, STEP, tuple(_pv(3)))
    forecast = Forecast(history.end_epoch_s, STEP, tuple([300] * DAY), "x", None)
    offsets = dict.fromkeys(range(DAY), (-500.0, 500.0))
    low, mid, high = bands(
        forecast, history, offsets, kind="pv", season_intervals=DAY, capacity_wh=350
    )
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
