"""Bands from the service's own past forecasts, and ``auto``'s choice on its own schedule.

Real fits (Prophet through cmdstan, MSTL through statsforecast) on small hourly
histories; the fits are counted by wrapping the fit functions, not timed. The service's
tests run it inline (``workers`` 0) over a real Mosquitto and SQLite.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import ReadingBody, TrainedOn
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.forecasting import _fit, _prophet, models
from wattmesh.forecasting._fit import past_tail
from wattmesh.forecasting._intervals import PointRun, to_quantile_forecast
from wattmesh.forecasting.history import PAST_DAYS, HistoryStore, LoggedBatch, LoggedReading
from wattmesh.forecasting.models import ModelContext, Series
from wattmesh.forecasting.server import ForecastServer, ServeConfig

STEP = 3600
DAY = 24
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
FORECASTER = SigningKey.generate()
HOUSE = SigningKey.generate()


def _demand(hours: int, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [
        round(400 + 250 * math.sin(2 * math.pi * (i % DAY) / DAY) + rng.uniform(-40, 40))
        for i in range(hours)
    ]


class _Counted:
    """Wraps a fit function: counts its calls and keeps what each returned."""

    def __init__(self, fit: Callable[..., Any]) -> None:
        self.fit = fit
        self.results: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fit(*args, **kwargs)
        self.results.append(result)
        return result

    @property
    def calls(self) -> int:
        return len(self.results)


def _count_fits(monkeypatch: pytest.MonkeyPatch, model: str) -> _Counted:
    if model == "prophet":
        counted = _Counted(_prophet.fit_predict_with)
        monkeypatch.setattr(_prophet, "fit_predict_with", counted)
        return counted
    from statsforecast.models import MSTL

    counted = _Counted(MSTL.forecast)

    def forecast(self: MSTL, *args: Any, **kwargs: Any) -> Any:  # a method: bound to self
        return counted(self, *args, **kwargs)

    monkeypatch.setattr(MSTL, "forecast", forecast)
    return counted


def _point(counted: _Counted, model: str) -> tuple[float, ...]:
    """The full fit's point forecast (the first fit of a forecast)."""
    first = counted.results[0]
    return tuple(float(v) for v in (first if model == "prophet" else first["mean"]))


@pytest.mark.parametrize("model", ["prophet", "mstl"])
def test_with_a_day_of_past_forecasts_one_fit_runs_and_the_band_comes_from_their_errors(
    monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    values = _demand(10 * DAY)
    history = Series(T0, STEP, tuple(values))
    ctx = ModelContext(kind="demand", calib_days=7)  # 7 calibration days after 3 of training
    counted = _count_fits(monkeypatch, model)
    models.forecast(model, history, DAY, ctx)
    assert counted.calls == 2  # no past forecasts: the full fit and the calibration fit

    # two days of the model's own earlier forecasts: 100 Wh low, then 300 Wh low
    past = tuple(float(v - (100 if i < DAY else 300)) for i, v in enumerate(values[-2 * DAY :]))
    counted = _count_fits(monkeypatch, model)
    ctx = ModelContext(kind="demand", calib_days=7, past_forecasts={model: past})
    got = models.forecast(model, history, DAY, ctx)
    assert counted.calls == 1  # only the full fit
    point = _point(counted, model)
    # pooled over +-2 h, each slot sees five 100s and five 300s: p10 +100, p50 +200, p90 +300
    for h in range(DAY):
        assert got.p10_wh[h] == max(math.floor(point[h] + 100.5), 0), h
        assert got.p50_wh[h] == max(math.floor(point[h] + 200.5), 0), h
        assert got.p90_wh[h] == max(math.floor(point[h] + 300.5), 0), h
    expected = to_quantile_forecast(
        PointRun(point, past, model), history_wh=values, start_epoch_s=history.end_epoch_s,
        interval_s=STEP, season=DAY,
    )  # fmt: skip
    assert (got.p10_wh, got.p50_wh, got.p90_wh) == (
        expected.p10_wh,
        expected.p50_wh,
        expected.p90_wh,
    )


def test_under_a_day_of_past_forecasts_or_another_models_the_calibration_fit_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = _demand(10 * DAY)
    history = Series(T0, STEP, tuple(values))
    for past in (
        {"mstl": tuple(map(float, values[-DAY - 1 :]))},  # MSTL's
        {"prophet": tuple(map(float, values[-DAY + 1 :]))},
    ):  # 23 h: under a day
        counted = _count_fits(monkeypatch, "prophet")
        ctx = ModelContext(kind="demand", calib_days=7, past_forecasts=past)
        models.forecast("prophet", history, DAY, ctx)
        assert counted.calls == 2, past.keys()  # fmt: skip


def test_the_tail_is_the_contiguous_stretch_of_one_version_ending_with_the_history() -> None:
    series = Series(T0, STEP, (0,) * 10)  # intervals T0 .. T0 + 9 h
    rows = (
        (T0 + 4 * STEP, "prophet/1", 4),  # before the gap
        (T0 + 6 * STEP, "mstl/1", 6),  # another model
        (T0 + 7 * STEP, "prophet/1", 7),
        (T0 + 8 * STEP, "prophet/1", 8),
        (T0 + 9 * STEP, "prophet/1", 9),
        (T0 + 10 * STEP, "prophet/1", 10),  # after the history: not yet logged
    )
    assert past_tail(rows, series, "prophet/1") == (7.0, 8.0, 9.0)
    assert past_tail(rows, series, "mstl/1") == ()  # does not reach the history's end
    assert past_tail(rows[:-2], series, "prophet/1") == ()


# --------------------------------------------------------------------- the service


@pytest_asyncio.fixture
async def link(mosquitto: BrokerAddress) -> AsyncIterator[Transport]:
    async with Transport(TransportConfig(address=mosquitto, client_id="fc-past")) as t:
        await asyncio.wait_for(t.wait_connected(), 10)
        yield t


def _logged(values: list[int], first_hour: int, total: int) -> tuple[LoggedBatch, int]:
    """Readings of ``h1`` (no PV) at hours ``first_hour`` .. ``first_hour + len(values)``
    whose import register adds ``values``; and the register at the end."""
    readings = []
    for i in range(len(values) + 1):
        t = T0 + (first_hour + i) * STEP
        readings.append(LoggedReading("h1", first_hour + i, t, ReadingBody(t, total, 0, 0, 0)))
        if i < len(values):
            total += values[i]
    on = TrainedOn(first_hour + len(values) + 1, "ab" * 32)
    return LoggedBatch(readings, [], 0, on.tree_size, on), total


def _server(
    topics: Topics, link: Transport, store: HistoryStore, now: list[int], model: str
) -> ForecastServer:
    config = ServeConfig(topics, interval_s=STEP, horizon=DAY, demand_model=model,
                         pv_model="naive-day", workers=0)  # fmt: skip
    return ForecastServer(config, key=FORECASTER, transport=link, store=store,
                          registry={"h1": HOUSE.verifying}, clock=lambda: now[0])  # fmt: skip


def _without_neighbourhood(server: ForecastServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The neighbourhood forecast's own fits and choices are not these tests' subject
    (tests/test_forecast_neighbourhood.py covers it): left out so the counts are one
    household's."""

    async def nothing() -> None:
        return None

    monkeypatch.setattr(server, "publish_neighbourhood", nothing)


async def test_the_next_daily_refit_keeps_the_past_forecasts_and_fits_prophet_once(
    link: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _demand(18 * DAY)  # 17 days: 14 calibration days after 3 of training
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    now = [T0 + 17 * 86_400]
    server = _server(Topics("fc-past"), link, store, now, "prophet")
    _without_neighbourhood(server, monkeypatch)
    counted = _count_fits(monkeypatch, "prophet")
    batch, total = _logged(values[: 17 * DAY], 0, 0)
    await server.take_logged(batch)  # the first fit: no past forecasts, two fits
    assert counted.calls == 2
    first = store.fit("h1")
    assert first is not None and first.demand.model == "prophet" and first.demand.fallback is None
    assert store.past("h1") == {}

    batch, _ = _logged(values[17 * DAY :], 17 * DAY, total)  # a day later, a day more
    await server.take_logged(batch)
    assert counted.calls == 2  # a fitted household is not refitted for a batch
    now[0] += 86_400
    counted = _count_fits(monkeypatch, "prophet")
    await server.refit_all()  # the next day's refit
    assert counted.calls == 1  # the full fit only
    kept = store.past("h1")
    assert set(kept) == {"demand"}  # PV is naive-day: nothing to keep
    assert [t for t, _, _ in kept["demand"]] == [T0 + (17 * DAY + i) * STEP for i in range(DAY)]
    assert [wh for _, _, wh in kept["demand"]] == list(first.demand.p50_wh[:DAY])
    assert {v for _, v, _ in kept["demand"]} == {first.demand.version}

    second = store.fit("h1")
    assert second is not None and second.demand.fallback is None
    point = tuple(float(v) for v in counted.results[0])
    expected = to_quantile_forecast(
        PointRun(point, tuple(float(wh) for wh in first.demand.p50_wh[:DAY]), "prophet"),
        history_wh=values, start_epoch_s=T0 + 18 * 86_400, interval_s=STEP, season=DAY,
    )  # fmt: skip
    assert second.demand.p10_wh == expected.p10_wh
    assert second.demand.p90_wh == expected.p90_wh
    assert second.demand.p50_wh == expected.p50_wh

    # rows older than the calibration window go at the next refit
    now[0] += (PAST_DAYS + 1) * 86_400
    batch, _ = _logged([400] * (PAST_DAYS + 1) * DAY, 18 * DAY, total + sum(values[17 * DAY :]))
    await server.take_logged(batch)
    await server.refit_all()
    intervals = [t for t, _, _ in store.past("h1")["demand"]]
    end = T0 + (18 + PAST_DAYS + 1) * 86_400
    assert min(intervals) >= end - PAST_DAYS * 86_400
    server.close()
    store.close()


async def test_auto_chooses_on_its_own_schedule_and_fits_the_stored_choice_between(
    link: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    now = [T0 + 10 * 86_400]
    server = _server(Topics("fc-choice"), link, store, now, "auto")
    _without_neighbourhood(server, monkeypatch)
    chooser = _Counted(_fit._select_catalog)
    monkeypatch.setattr(_fit, "_select_catalog", chooser)
    batch, _ = _logged(_demand(10 * DAY), 0, 0)
    await server.take_logged(batch)
    assert chooser.calls == 1 and server.counters["model_choices"] == 1  # demand (PV: zero)
    choices = store.choices("h1")
    fit = store.fit("h1")
    assert fit is not None
    assert choices == {"demand": (fit.demand.model, now[0])}

    for _ in range(6):  # six daily refits within the week: the stored choice, no backtests
        now[0] += 86_400
        await server.refit_all()
    assert chooser.calls == 1 and server.counters["model_choices"] == 1
    assert server.counters["fits"] == 7
    fit = store.fit("h1")
    assert fit is not None and fit.demand.model == choices["demand"][0]

    now[0] += 86_400  # a week after the choice: chosen again
    await server.refit_all()
    assert chooser.calls == 2 and server.counters["model_choices"] == 2
    assert store.choices("h1")["demand"][1] == now[0]
    server.close()
    store.close()


async def test_a_short_history_chooses_at_every_refit_and_stores_nothing(
    link: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    now = [T0 + 4 * 86_400]
    server = _server(Topics("fc-short"), link, store, now, "auto")
    _without_neighbourhood(server, monkeypatch)
    chooser = _Counted(_fit._select_catalog)
    monkeypatch.setattr(_fit, "_select_catalog", chooser)
    batch, _ = _logged(_demand(4 * DAY), 0, 0)
    await server.take_logged(batch)
    await server.refit_all()
    assert chooser.calls == 2  # 4 days: too few for a choice to keep
    assert server.counters["model_choices"] == 0 and store.choices("h1") == {}
    server.close()
    store.close()
