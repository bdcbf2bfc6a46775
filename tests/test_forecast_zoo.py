"""The forecast models by name (forecasting.models): exact baselines, PV physics, intervals,
combinations, the weather provider, the neighbourhood forecast and the choice of model.

Series are short and synthetic with exact expectations where the rule allows; Prophet, MSTL
and pvlib run for real.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.forecasting._combine import blend
from wattmesh.forecasting._intervals import PointRun
from wattmesh.forecasting._pv import site_clearsky_wh
from wattmesh.forecasting.models import (
    MODELS,
    ModelContext,
    PvSite,
    QuantileForecast,
    Series,
    forecast,
    forecast_many,
    model_names,
    neighbourhood_forecast,
    select_model,
)
from wattmesh.forecasting.weather import RecordedWeather, WeatherSeries

DAY = 24
START = 1_781_049_600  # 2026-06-10T00:00:00Z
GREENSBORO = PvSite(36.1, -79.95, 30.0, 180.0, 273.0)
DEMAND = ModelContext("demand")


def _demand(days: int, seed: int = 1) -> Series:
    rng = random.Random(seed)
    values = []
    for i in range(days * DAY):
        hour = i % DAY
        base = 300 + 500 * (hour in (7, 8, 18, 19, 20)) + 100 * ((i // DAY) % 7 >= 5)
        values.append(base + rng.randrange(0, 120))
    return Series(START, 3600, tuple(values))


def _pv(days: int, seed: int = 2) -> Series:
    """Hourly PV in Wh, a bell from 10 to 23 UTC (Greensboro daylight), cloudy days."""
    rng = random.Random(seed)
    values = []
    for _ in range(days):
        cloud = 0.4 + 0.6 * rng.random()
        for hour in range(DAY):
            sun = math.sin(math.pi * (hour - 10) / 13) if 10 <= hour < 23 else 0.0
            values.append(round(4000 * sun * cloud))
    return Series(START, 3600, tuple(values))


def _ordered(fc: QuantileForecast) -> bool:
    return all(lo <= mid <= hi for lo, mid, hi in zip(fc.p10_wh, fc.p50_wh, fc.p90_wh, strict=True))


def test_naive_day_repeats_yesterday_and_naive_week_last_week() -> None:
    history = _demand(21)
    values = history.values_wh
    day = forecast("naive-day", history, DAY, DEMAND)
    week = forecast("naive-week", history, 2 * DAY, DEMAND)
    # demand's p50 is the rule shifted by the median of its recent errors; with errors
    # exactly zero (a series that repeats daily) the p50 is the rule itself
    flat = Series(START, 3600, values[:DAY] * 21)
    assert forecast("naive-day", flat, DAY, DEMAND).p50_wh == values[:DAY]
    weekly = Series(START, 3600, values[: 7 * DAY] * 3)
    assert forecast("naive-week", weekly, 2 * DAY, DEMAND).p50_wh == values[: 2 * DAY]
    for fc in (day, week):
        assert _ordered(fc)
        assert fc.start_epoch_s == history.end_epoch_s
    assert day.model == "naive-day" and day.fallback_reason is None


def test_mean_7d_is_the_same_hour_mean_of_the_last_week() -> None:
    # each day of the last week has one constant value: 0, 7, 14, ... 42, so every hour's
    # mean is 21; before that a week of 21s makes every calibration error exactly 0
    days = [21] * 7 + [7 * d for d in range(7)]
    history = Series(START, 3600, tuple(v for d in days for v in [d] * DAY))
    fc = forecast("mean-7d", history, DAY, DEMAND)
    assert fc.p50_wh == (21,) * DAY


def test_short_history_falls_back_with_a_reason() -> None:
    history = Series(START, 3600, (100, 200, 300))
    fc = forecast("naive-day", history, 4, DEMAND)
    assert fc.p50_wh == (200,) * 4
    assert fc.fallback_reason is not None and "shorter" in fc.fallback_reason
    assert forecast("prophet", history, 4, DEMAND).fallback_reason is not None


def test_intervals_cover_the_recent_errors() -> None:
    fc = forecast("mean-7d", _demand(30), DAY, DEMAND)
    assert _ordered(fc)
    assert sum(hi - lo for lo, hi in zip(fc.p10_wh, fc.p90_wh, strict=True)) > 0


@pytest.mark.parametrize("name", model_names("pv"))
def test_pv_models_stay_within_physics(name: str) -> None:
    history = _pv(20)
    capacity_w = 3000  # below the bell's peak, so the cap bites
    ctx = ModelContext("pv", capacity_w=capacity_w, site=GREENSBORO)
    fc = forecast(name, history, 2 * DAY, ctx)
    assert _ordered(fc)
    night = [h for h in range(2 * DAY) if not 10 <= h % DAY < 23]
    for series in (fc.p10_wh, fc.p50_wh, fc.p90_wh):
        assert all(0 <= v <= capacity_w for v in series)
        assert all(series[h] == 0 for h in night)
    assert fc.fallback_reason is None


def test_clearsky_index_is_clear_sky_times_yesterdays_index() -> None:
    days = 5
    sky, _ = site_clearsky_wh(
        GREENSBORO, capacity_w=5000, start_epoch_s=START, interval_s=3600, count=(days + 1) * DAY
    )
    # the first days at index 0.8, yesterday at 0.5: tomorrow is 0.5 x clear sky
    index = [0.8] * (days - 1) + [0.5]
    history = Series(START, 3600, tuple(round(index[i // DAY] * sky[i]) for i in range(days * DAY)))
    ctx = ModelContext("pv", capacity_w=5000, site=GREENSBORO)
    fc = forecast("clearsky-index", history, DAY, ctx)
    expected = [0.5 * v for v in sky[days * DAY :]]
    night = {h for h in range(DAY) if history.values_wh[(days - 1) * DAY + h] == 0}
    for h in range(DAY):
        if h in night:
            assert fc.p50_wh[h] == 0
        else:
            assert abs(fc.p50_wh[h] - expected[h]) <= 2, (h, fc.p50_wh[h], expected[h])
    assert max(fc.p50_wh) > 1000


def test_without_a_site_the_envelope_stands_in_for_clear_sky() -> None:
    clear = Series(START, 3600, tuple(v for _ in range(10) for v in _pv(1).values_wh))
    fc = forecast("clearsky-index", clear, DAY, ModelContext("pv", capacity_w=5000))
    assert fc.p50_wh == clear.values_wh[:DAY]  # index 1 on the envelope: yesterday again


def test_fitted_models_and_combinations_share_one_run() -> None:
    history = _demand(28)
    out = forecast_many(
        list(model_names("demand")), history, DAY, ModelContext("demand", country="FR")
    )
    assert set(out) == set(model_names("demand"))
    for name, fc in out.items():
        assert _ordered(fc), name
        assert len(fc.p50_wh) == DAY
        assert fc.fallback_reason is None, (name, fc.fallback_reason)
    # a combination lies within its members' range, step by step
    members = [out[m] for m in ("naive-day", "mean-7d", "mean-14d", "mstl", "prophet")]
    for h in range(DAY):
        lo = min(m.p50_wh[h] for m in members)
        hi = max(m.p50_wh[h] for m in members)
        assert lo - 300 <= out["blend"].p50_wh[h] <= hi + 300  # the median shift moves it a bit


def test_prophet_uses_the_weather_providers_temperature(tmp_path: Path) -> None:
    history = _demand(21)
    n = len(history.values_wh)
    rows = ["timestamp,ghi_w_m2,temp_c"]
    for i in range(n + DAY):
        stamp = START + 3600 * i
        rows.append(f"{stamp_iso(stamp)},0,{5 + (i % DAY) / 4}")
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(rows) + "\n")
    ctx = ModelContext("demand", weather=RecordedWeather.from_csv(path))
    fc = forecast("prophet", history, DAY, ctx)
    assert fc.fallback_reason is None and _ordered(fc)


def stamp_iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def test_recorded_weather_means_rows_within_an_interval_and_holds_hourly_rows() -> None:
    text = (
        "timestamp,ghi_w_m2,temp_c,cloud\n"
        "2026-06-10T00:00:00+00:00,100,10,0.5\n"
        "2026-06-10T00:30:00+00:00,300,12,\n"
        "2026-06-10T01:00:00Z,500,14,1\n"
    )
    weather = RecordedWeather.parse(text)
    hourly = weather.weather(START, 3600, 3)
    assert hourly.ghi_w_m2 == (200.0, 500.0, 500.0)  # the last row holds into the next hour
    assert hourly.temp_c == (11.0, 14.0, 14.0)
    assert hourly.cloud == (0.5, 1.0, 1.0)
    quarter = weather.weather(START + 3600 + 900, 900, 1)
    assert quarter.ghi_w_m2 == (500.0,)
    far = weather.weather(START + 10 * 3600, 3600, 1)
    assert far.ghi_w_m2 == (None,)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("timestamp,temp_c\n", "missing column"),
        ("timestamp,ghi_w_m2,temp_c\nyesterday,1,2\n", "bad timestamp"),
        ("timestamp,ghi_w_m2,temp_c\n2026-06-10T00:00:00Z,sunny,2\n", "not a number"),
    ],
)
def test_recorded_weather_refuses_a_bad_file(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RecordedWeather.parse(text)


def test_neighbourhood_forecast_is_the_forecast_of_the_sum() -> None:
    homes = [_demand(21, seed=s) for s in range(5)]
    fc = neighbourhood_forecast(homes, DAY, DEMAND, model="naive-day")
    total = tuple(sum(col) for col in zip(*(h.values_wh for h in homes), strict=True))
    direct = forecast("naive-day", Series(START, 3600, total), DAY, DEMAND)
    assert fc == direct
    with pytest.raises(ValueError, match="differ"):
        neighbourhood_forecast([homes[0], _demand(20)], DAY, DEMAND, model="naive-day")


@dataclass(frozen=True)
class _Score:
    mase: float


@dataclass(frozen=True)
class _Result:
    models: dict[str, _Score]


def test_select_model_takes_the_lowest_mase_and_ties_to_the_simpler() -> None:
    assert select_model(_Result({"naive-day": _Score(1.0), "prophet": _Score(0.8)})) == "prophet"
    tie = {"naive-day": _Score(1.0), "mean-7d": _Score(0.802), "blend": _Score(0.8)}
    assert select_model(_Result(tie)) == "mean-7d"
    assert (
        select_model(_Result({"mstl": _Score(math.nan), "naive-day": _Score(2.0)})) == "naive-day"
    )
    assert next(iter(MODELS)) == "naive-day"


def test_quantile_forecast_refuses_disordered_quantiles() -> None:
    with pytest.raises(ValueError, match="order"):
        QuantileForecast(START, 3600, (5,), (4,), (6,), "x")
    with pytest.raises(ValueError, match="no demand model"):
        forecast("clearsky-index", _demand(3), DAY, DEMAND)


def test_blend_weights_members_by_their_recent_errors() -> None:
    history = (10, 10, 10, 10)
    good = PointRun((20.0,), (10.0, 11.0), model="a")  # calibration MAE 0.5
    poor = PointRun((40.0,), (12.0, 12.0), model="b")  # calibration MAE 2.0
    worst = PointRun((90.0,), (20.0, 20.0), model="c")  # calibration MAE 10
    best2 = blend([good, poor, worst], history, model="best2", best=2)
    assert best2.values == (30.0,)  # the mean of the two best
    inverse = blend([good, poor], history, model="blend", best=None)
    assert inverse.values[0] == pytest.approx((20 / 0.5 + 40 / 2.0) / (1 / 0.5 + 1 / 2.0))
    failed = PointRun((1000.0,), (), model="d", fallback_reason="fit failed")
    assert blend([good, failed], history, model="blend", best=None).values == (20.0,)


def test_pv_with_forecast_irradiance_takes_each_hours_index_from_it() -> None:
    days = 4
    sky, clear_ghi = site_clearsky_wh(
        GREENSBORO, capacity_w=5000, start_epoch_s=START, interval_s=3600, count=(days + 1) * DAY
    )
    history = Series(START, 3600, tuple(round(0.9 * v) for v in sky[: days * DAY]))

    class HalfSun:
        """A provider whose forecast day has half the clear-sky irradiance."""

        def weather(self, start_epoch_s: int, interval_s: int, count: int) -> WeatherSeries:
            ghi = [g * (0.5 if i >= days * DAY else 0.9) for i, g in enumerate(clear_ghi[:count])]
            return WeatherSeries(tuple(ghi), (None,) * count, (None,) * count)

    ctx = ModelContext("pv", capacity_w=5000, site=GREENSBORO, weather=HalfSun())
    fc = forecast("clearsky-index", history, DAY, ctx)
    for h in range(DAY):
        i = days * DAY + h
        if fc.p50_wh[h] and clear_ghi[i] >= 20.0:
            assert abs(fc.p50_wh[h] - 0.5 * sky[i]) <= 2, h
    assert sum(fc.p50_wh) < 0.6 * sum(sky[days * DAY :])
