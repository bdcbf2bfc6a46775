"""Tests for forecasting.models: baselines, PV/demand post-processing, Prophet, backtest.

Data is synthetic and deterministic (seeded): a PV bell with exact-zero nights plus noise and
cloudiness, and a demand series with morning/evening peaks and a weekend uplift. Prophet runs
for real; the one fake is a Prophet fit that raises, to exercise the fallback.
"""

from __future__ import annotations

import logging
import math
import random
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.forecasting import _prophet
from wattmesh.forecasting._models import (
    Forecast,
    Kind,
    Series,
    backtest,
    night_slots,
    postprocess_demand,
    postprocess_pv,
    prophet_forecast,
    same_slot_mean,
    seasonal_naive,
)

START_EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday
INTERVAL_S = 900
DAY = 96  # 15-minute intervals per day
REPO_ROOT = Path(__file__).resolve().parent.parent


def pv_series(days: int, *, seed: int = 1) -> Series:
    """PV output in Wh per 15 min: sine bell 06:00-18:00 UTC, peak ~1 kWh (4 kW), a random
    cloudiness per day, Gaussian noise, exact zeros at night."""
    rng = random.Random(seed)
    values: list[int] = []
    for _ in range(days):
        cloud = rng.uniform(0.6, 1.0)
        for slot in range(DAY):
            hour = slot * INTERVAL_S / 3600
            if 6 <= hour < 18:
                bell = math.sin(math.pi * (hour - 6) / 12)
                values.append(max(0, round(1000 * cloud * bell + rng.gauss(0, 30))))
            else:
                values.append(0)
    return Series(START_EPOCH_S, INTERVAL_S, tuple(values))


def demand_series(
    days: int, *, seed: int = 2, noise_wh: float = 60.0, trend_wh_per_day: float = 0.0
) -> Series:
    """Demand in Wh per 15 min: base load, morning and evening peaks, +60 Wh on weekends,
    an optional linear trend, Gaussian noise."""
    rng = random.Random(seed)
    values: list[int] = []
    for day in range(days):
        weekend = (day + 3) % 7 >= 5  # day 0 is a Thursday
        for slot in range(DAY):
            hour = slot * INTERVAL_S / 3600
            daily = 120 * math.exp(-(((hour - 7.5) / 1.2) ** 2)) + 220 * math.exp(
                -(((hour - 19) / 2) ** 2)
            )
            trend = trend_wh_per_day * (day + slot / DAY)
            level = 150 + daily + (60 if weekend else 0) + trend + rng.gauss(0, noise_wh)
            values.append(max(0, round(level)))
    return Series(START_EPOCH_S, INTERVAL_S, tuple(values))


def assert_int_wh(forecast: Forecast, *, history: Series, horizon: int) -> None:
    assert forecast.start_epoch_s == history.end_epoch_s
    assert forecast.interval_s == history.interval_s
    assert len(forecast.values_wh) == horizon
    assert all(type(v) is int and v >= 0 for v in forecast.values_wh)


# --- import cost ------------------------------------------------------------------------


def test_importing_models_loads_neither_pandas_nor_prophet() -> None:
    code = (
        "import sys, wattmesh.forecasting._models\n"
        "heavy = {'pandas', 'numpy', 'prophet', 'cmdstanpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


# --- seasonal naive -----------------------------------------------------------------------


def test_seasonal_naive_repeats_the_last_day_exactly() -> None:
    history = demand_series(10)
    horizon = 2 * DAY + 5
    forecast = seasonal_naive(history, horizon, season_intervals=DAY, kind="demand")
    last_day = history.values_wh[-DAY:]
    assert forecast.values_wh == tuple(last_day[h % DAY] for h in range(horizon))
    assert (forecast.model, forecast.fallback_reason) == ("seasonal_naive", None)
    assert_int_wh(forecast, history=history, horizon=horizon)


def test_seasonal_naive_with_less_than_a_season_repeats_the_rounded_mean() -> None:
    history = Series(START_EPOCH_S, INTERVAL_S, (10, 11, 12, 12))  # mean 11.25 -> 11
    forecast = seasonal_naive(history, 3, season_intervals=DAY, kind="demand")
    assert forecast.values_wh == (11, 11, 11)
    assert forecast.model == "history_mean"
    assert forecast.fallback_reason is not None
    assert "shorter than one season" in forecast.fallback_reason


def test_mean_rounds_half_up() -> None:
    history = Series(START_EPOCH_S, INTERVAL_S, (10, 11))  # mean 10.5 -> 11
    forecast = seasonal_naive(history, 1, season_intervals=DAY, kind="demand")
    assert forecast.values_wh == (11,)


def test_seasonal_naive_on_empty_history_forecasts_zeros() -> None:
    history = Series(START_EPOCH_S, INTERVAL_S, ())
    forecast = seasonal_naive(history, 4, season_intervals=DAY, kind="pv")
    assert forecast.values_wh == (0, 0, 0, 0)
    assert forecast.start_epoch_s == START_EPOCH_S
    assert forecast.fallback_reason is not None
    assert "empty history" in forecast.fallback_reason


@pytest.mark.parametrize("horizon", [0, -1])
def test_a_horizon_below_one_is_rejected(horizon: int) -> None:
    with pytest.raises(ValueError, match="horizon"):
        seasonal_naive(demand_series(2), horizon, season_intervals=DAY, kind="demand")


# --- same-slot mean -----------------------------------------------------------------------


def test_same_slot_mean_hand_example() -> None:
    # Season of 4 slots; three whole days, then one value of a fourth day (n = 13).
    day1, day2, day3 = (1, 2, 3, 4), (10, 20, 30, 40), (3, 4, 5, 7)
    history = Series(START_EPOCH_S, 21_600, (*day1, *day2, *day3, 9))
    forecast = same_slot_mean(history, 6, season_intervals=4, seasons=2, kind="demand")
    # The next slot is 13 % 4 = 1. Means of the last two occurrences of slots 1, 2, 3, 0, 1, 2:
    # slot 1: day3 4, day2 20 -> 12;  slot 2: 5, 30 -> 17.5 -> 18;  slot 3: 7, 40 -> 23.5 -> 24;
    # slot 0: the fourth day's 9 and day3's 3 -> 6.
    assert forecast.values_wh == (12, 18, 24, 6, 12, 18)
    assert (forecast.model, forecast.fallback_reason) == ("same_slot_mean", None)


def test_same_slot_mean_uses_the_seasons_that_exist() -> None:
    history = Series(START_EPOCH_S, 21_600, (1, 2, 3, 4, 10, 20, 30, 41))
    forecast = same_slot_mean(history, 4, season_intervals=4, seasons=7, kind="demand")
    assert forecast.values_wh == (6, 11, 17, 23)  # 5.5, 11, 16.5, 22.5 rounded half up


def test_same_slot_mean_with_one_season_equals_seasonal_naive() -> None:
    history = demand_series(9)
    assert (
        same_slot_mean(history, 150, season_intervals=DAY, seasons=1, kind="demand").values_wh
        == seasonal_naive(history, 150, season_intervals=DAY, kind="demand").values_wh
    )


# --- post-processing ----------------------------------------------------------------------


def test_postprocess_demand_clips_and_rounds() -> None:
    assert postprocess_demand([-3.2, 0.4, 2.6, 7, -0.0]) == (0, 0, 3, 7, 0)


def test_night_slots_come_from_the_last_seven_days() -> None:
    # Season 3. Eight days: slot 0 is 0 on the last 7 days but not on the oldest one,
    # slot 1 produced once within the window, slot 2 always produced.
    days = [(5, 0, 1)] + [(0, 0, 1)] * 3 + [(0, 2, 1)] + [(0, 0, 1)] * 3
    history = Series(START_EPOCH_S, 28_800, tuple(v for day in days for v in day))
    assert night_slots(history, season_intervals=3) == frozenset({0})


def test_night_slots_need_the_slot_to_be_seen() -> None:
    history = Series(START_EPOCH_S, 28_800, (0,))
    assert night_slots(history, season_intervals=3) == frozenset({0})


def test_postprocess_pv_zeroes_night_slots_and_clips() -> None:
    # Season 4, two days; slots 0 and 3 were dark on both days.
    history = Series(START_EPOCH_S, 21_600, (0, 5, 7, 0, 0, 6, 8, 0))
    values = [1.4, 4.5, -2.0, 3.0, 0.6, -0.6]  # slots 0, 1, 2, 3, 0, 1; 4.5 rounds half up
    assert postprocess_pv(values, history=history, season_intervals=4) == (0, 5, 0, 0, 0, 0)


@given(
    values=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60),
    horizon=st.integers(min_value=1, max_value=40),
    season=st.integers(min_value=1, max_value=12),
    kind=st.sampled_from(["demand", "pv"]),
)
def test_baselines_always_give_horizon_many_int_wh(
    values: list[int], horizon: int, season: int, kind: Kind
) -> None:
    history = Series(START_EPOCH_S, 3_600, tuple(values))
    for forecast in (
        seasonal_naive(history, horizon, season_intervals=season, kind=kind),
        same_slot_mean(history, horizon, season_intervals=season, seasons=3, kind=kind),
    ):
        assert_int_wh(forecast, history=history, horizon=horizon)
        assert (forecast.fallback_reason is None) == (len(values) >= season)


@given(
    values=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=60),
    raw=st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=30),
    season=st.integers(min_value=1, max_value=8),
)
def test_postprocess_pv_is_never_negative_and_zero_at_night(
    values: list[int], raw: list[float], season: int
) -> None:
    history = Series(START_EPOCH_S, 3_600, tuple(values))
    out = postprocess_pv(raw, history=history, season_intervals=season)
    night = night_slots(history, season_intervals=season)
    assert len(out) == len(raw)
    assert all(type(v) is int and v >= 0 for v in out)
    assert all(v == 0 for h, v in enumerate(out) if (len(values) + h) % season in night)


# --- PV: every model, Prophet included ----------------------------------------------------

PV_HISTORY = pv_series(28, seed=2)
PV_HORIZON = 2 * DAY


@pytest.fixture(scope="module")
def pv_forecasts() -> dict[str, Forecast]:
    return {
        "seasonal_naive": seasonal_naive(PV_HISTORY, PV_HORIZON, season_intervals=DAY, kind="pv"),
        "same_slot_mean": same_slot_mean(PV_HISTORY, PV_HORIZON, season_intervals=DAY, kind="pv"),
        "prophet": prophet_forecast(
            PV_HISTORY, PV_HORIZON, kind="pv", min_history_intervals=7 * DAY
        ),
    }


def test_pv_history_has_the_expected_nights() -> None:
    # 06:00-18:00 UTC is daylight in the generator: slots 24..71 produce, the rest are night.
    night = night_slots(PV_HISTORY, season_intervals=DAY)
    assert night == frozenset(range(24)) | frozenset(range(72, DAY))


@pytest.mark.parametrize("model", ["seasonal_naive", "same_slot_mean", "prophet"])
def test_pv_forecasts_are_non_negative_and_zero_at_night(
    pv_forecasts: dict[str, Forecast], model: str
) -> None:
    forecast = pv_forecasts[model]
    assert (forecast.model, forecast.fallback_reason) == (model, None)
    assert_int_wh(forecast, history=PV_HISTORY, horizon=PV_HORIZON)
    night = night_slots(PV_HISTORY, season_intervals=DAY)
    n = len(PV_HISTORY.values_wh)
    by_slot = {(n + h) % DAY: v for h, v in enumerate(forecast.values_wh)}
    assert all(by_slot[slot] == 0 for slot in night)
    assert by_slot[48] > 400  # noon: the forecast is not trivially zero


def test_raw_prophet_pv_is_positive_at_night() -> None:
    # The night rule does real work on Prophet output: on this history the raw fit sits tens of
    # Wh above 0 at night, so clipping negatives alone would not give dark nights.
    n = len(PV_HISTORY.values_wh)
    raw = _prophet.fit_predict(
        history_epoch_s=[START_EPOCH_S + i * INTERVAL_S for i in range(n)],
        values_wh=PV_HISTORY.values_wh,
        future_epoch_s=[PV_HISTORY.end_epoch_s + h * INTERVAL_S for h in range(DAY)],
        kind="pv",
    )
    night = night_slots(PV_HISTORY, season_intervals=DAY)
    assert max(raw[h] for h in range(DAY) if (n + h) % DAY in night) > 0.5


# --- Prophet accuracy and fallbacks -------------------------------------------------------


def test_prophet_beats_or_matches_seasonal_naive_on_clean_seasonal_trend_demand() -> None:
    series = demand_series(31, noise_wh=15.0, trend_wh_per_day=3.0)
    runs = {
        name: backtest(series, model=model, horizon=DAY, origins=3, step=DAY)
        for name, model in {
            "naive": partial(seasonal_naive, season_intervals=DAY, kind="demand"),
            "prophet": partial(prophet_forecast, kind="demand", min_history_intervals=14 * DAY),
        }.items()
    }
    assert runs["prophet"].fallbacks == 0
    assert runs["prophet"].mae_wh <= runs["naive"].mae_wh
    assert runs["prophet"].mase <= runs["naive"].mase


@pytest.mark.parametrize("kind", ["demand", "pv"])
def test_prophet_falls_back_to_seasonal_naive_on_short_history(kind: Kind) -> None:
    history = pv_series(3) if kind == "pv" else demand_series(3)
    forecast = prophet_forecast(history, DAY, kind=kind, min_history_intervals=7 * DAY)
    expected = seasonal_naive(history, DAY, season_intervals=DAY, kind=kind)
    assert forecast.values_wh == expected.values_wh
    assert forecast.model == "seasonal_naive"
    assert forecast.fallback_reason is not None
    assert "min_history_intervals=672" in forecast.fallback_reason
    assert_int_wh(forecast, history=history, horizon=DAY)


def test_prophet_fallback_on_sub_day_history_says_both_reasons() -> None:
    history = Series(START_EPOCH_S, INTERVAL_S, (4, 6, 8))
    forecast = prophet_forecast(history, 5, kind="demand", min_history_intervals=DAY)
    assert forecast.values_wh == (6,) * 5
    assert forecast.model == "history_mean"
    assert forecast.fallback_reason is not None
    assert "min_history_intervals" in forecast.fallback_reason
    assert "shorter than one season" in forecast.fallback_reason


def test_prophet_failure_falls_back_and_logs_once_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_fit(**_: object) -> list[float]:
        raise RuntimeError("optimisation diverged")

    monkeypatch.setattr(_prophet, "fit_predict", failing_fit)
    caplog.set_level(logging.DEBUG, logger="wattmesh.forecasting._models")
    forecast = prophet_forecast(PV_HISTORY, DAY, kind="pv", min_history_intervals=DAY)
    expected = seasonal_naive(PV_HISTORY, DAY, season_intervals=DAY, kind="pv")
    assert forecast.values_wh == expected.values_wh
    assert forecast.model == "seasonal_naive"
    assert forecast.fallback_reason == "prophet failed: RuntimeError: optimisation diverged"
    records = [r for r in caplog.records if r.name == "wattmesh.forecasting._models"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert records[0].exc_info is not None


def test_prophet_runs_quietly_and_under_warnings_as_errors() -> None:
    # A fresh interpreter with no logging configured: cmdstanpy would attach its own stderr
    # handler and prophet would complain about plotly, unless their loggers are quietened.
    code = (
        "from wattmesh.forecasting._models import Series, prophet_forecast\n"
        f"s = Series({START_EPOCH_S}, 3600, tuple(100 + (i % 24) * 10 for i in range(24 * 14)))\n"
        "f = prophet_forecast(s, 24, kind='demand', min_history_intervals=48)\n"
        "assert (f.model, f.fallback_reason) == ('prophet', None), f\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


# --- backtest -----------------------------------------------------------------------------


def test_backtest_hand_example() -> None:
    # interval 12 h -> a season of 2; y_t = 10 t; a model that always forecasts 0 Wh.
    series = Series(START_EPOCH_S, 43_200, tuple(10 * t for t in range(10)))
    seen_lengths: list[int] = []

    def zeros(history: Series, horizon: int) -> Forecast:
        seen_lengths.append(len(history.values_wh))
        return Forecast(history.end_epoch_s, history.interval_s, (0,) * horizon, "zeros", None)

    result = backtest(series, model=zeros, horizon=2, origins=2, step=3)
    # Origins 5 and 8. Errors 50, 60 then 80, 90; in-sample seasonal naive MAE is 20 for both.
    assert seen_lengths == [5, 8]
    assert result.origin_mae_wh == (55.0, 85.0)
    assert result.mae_wh == 70.0
    assert result.mase == pytest.approx((55 / 20 + 85 / 20) / 2)
    assert (result.horizon, result.fallbacks) == (2, 0)


def test_backtest_counts_fallbacks() -> None:
    series = demand_series(4)
    model = partial(prophet_forecast, kind="demand", min_history_intervals=10 * DAY)
    result = backtest(series, model=model, horizon=DAY, origins=2, step=DAY)
    assert result.fallbacks == 2
    assert result.mase == pytest.approx(
        backtest(
            series,
            model=partial(seasonal_naive, season_intervals=DAY, kind="demand"),
            horizon=DAY,
            origins=2,
            step=DAY,
        ).mase
    )


def test_backtest_rejects_too_little_history() -> None:
    with pytest.raises(ValueError, match="too short"):
        backtest(
            demand_series(3),
            model=partial(seasonal_naive, season_intervals=DAY, kind="demand"),
            horizon=DAY,
            origins=2,
            step=DAY,
        )


def test_backtest_mase_is_nan_on_a_flat_history() -> None:
    series = Series(START_EPOCH_S, INTERVAL_S, (7,) * (3 * DAY))
    model = partial(seasonal_naive, season_intervals=DAY, kind="demand")
    result = backtest(series, model=model, horizon=DAY, origins=1, step=1)
    assert result.mae_wh == 0.0
    assert math.isnan(result.mase)
