"""Prophet's warm start: a fit started from a previous fit's parameters forecasts as a cold
one does, hands back its own parameters, and a start of the wrong shape falls back to cold;
the service's stored fit keeps them across a restart (SQLite) for the next refit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wattmesh.forecasting import _prophet
from wattmesh.forecasting._fit import FitJob, Fitted, fit_household
from wattmesh.forecasting.history import HistoryStore, StoredFit

STEP = 3600
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
DAYS = 14
FIT_DAYS = 17  # the service's fit: 14 calibration days after at least 3 of training


def _history(days: int, shift_days: int = 0) -> tuple[list[int], list[float]]:
    times = [T0 + (shift_days * 24 + i) * STEP for i in range(days * 24)]
    values = [300.0 + 200.0 * math.sin(2 * math.pi * (t % 86_400) / 86_400) for t in times]
    return times, values


def _fit(shift_days: int, warm: dict[str, Any] | None) -> list[float]:
    times, values = _history(DAYS, shift_days)
    return _prophet.fit_predict_with(
        history_epoch_s=times, values_wh=values,
        future_epoch_s=[times[-1] + (h + 1) * STEP for h in range(24)],
        daily_order=10, weekly=True, warm=warm,
    )  # fmt: skip


def test_a_warm_fit_forecasts_like_a_cold_one_and_keeps_its_parameters() -> None:
    warm: dict[str, Any] = {}
    _fit(0, warm)
    assert set(warm) == {"k", "m", "delta", "beta", "sigma_obs"}
    first = dict(warm)
    warmed = _fit(1, warm)  # the next day's refit, started from yesterday's parameters
    cold = _fit(1, None)
    assert len(warmed) == 24
    assert all(math.isfinite(v) for v in warmed)
    assert max(abs(a - b) for a, b in zip(warmed, cold, strict=True)) < 5.0  # Wh of ~500
    assert warm != first  # updated with the new fit's parameters


def test_a_start_of_the_wrong_shape_falls_back_to_a_cold_fit() -> None:
    warm: dict[str, Any] = {}
    _fit(0, warm)
    warm["beta"] = warm["beta"][:3]  # another model's seasonality terms
    forecast = _fit(1, warm)
    cold = _fit(1, None)
    assert max(abs(a - b) for a, b in zip(forecast, cold, strict=True)) < 1e-6
    assert len(warm["beta"]) > 3


def _job(days: int, shift_days: int, previous: StoredFit | None) -> FitJob:
    _, demand = _history(days, shift_days)
    pv = [max(round(v - 300.0), 0) for v in demand]
    return FitJob(
        "h1", T0 + shift_days * 86_400, STEP, tuple(round(v) for v in demand), tuple(pv), 48,
        demand_model="prophet", pv_model="mean-7d", pv_capacity_w=1_000,
        demand_state=None if previous is None else previous.demand.state,
        pv_state=None if previous is None else previous.pv.state,
    )  # fmt: skip


def _valid(fit: Fitted) -> None:
    assert fit.model == "prophet" and fit.fallback is None
    assert len(fit.p50_wh) == 48
    assert all(a <= b <= c for a, b, c in zip(fit.p10_wh, fit.p50_wh, fit.p90_wh, strict=True))
    assert fit.state is not None and set(fit.state) == {"k", "m", "delta", "beta", "sigma_obs"}


def test_the_stored_fit_survives_a_restart_and_the_next_refit_starts_from_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'forecast.db'}"
    store = HistoryStore(url)
    demand, pv = fit_household(_job(FIT_DAYS, 0, None))
    _valid(demand)
    assert pv.model == "mean-7d" and pv.state is None  # only Prophet keeps a start
    store.save_fit(StoredFit("h1", T0, None, demand, pv))
    store.close()

    restarted = HistoryStore(url)  # a restarted service reads what it kept
    previous = restarted.fit("h1")
    restarted.close()
    assert previous is not None
    assert previous.demand.state == demand.state

    demand2, _ = fit_household(_job(FIT_DAYS, 1, previous))  # the next day's refit, warm
    _valid(demand2)
    assert demand2.state != demand.state  # the new fit's own parameters, for the next one
