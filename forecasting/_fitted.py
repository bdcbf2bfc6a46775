"""The fitted models: Prophet (demand and PV variants) and MSTL from statsforecast.

Where the 10/90 % band comes from: the model's own out-of-sample errors on the last days
of the history. In the service (``forecast serve``) those are the model's own earlier
forecasts: at each refit the previous refit's point forecasts of the intervals logged
since are kept (:class:`forecasting.history.HistoryStore`, the last
:data:`~forecasting.history.PAST_DAYS` days) and come back as
``ModelContext.past_forecasts``; with at least :data:`MIN_PAST_DAYS` day of them (a contiguous
stretch ending at the history's end, by the same model) the model is fitted once, on the
whole history, and its band comes from the errors of those forecasts (mostly up to a day
ahead, like the forecast it serves). Without them (a household's first fit, a model just
changed, a backtest) it is fitted twice: on the whole history for the forecast, and on the
history less its last calibration days to forecast those days, whose errors calibrate the
band (out of sample too; one to fourteen days ahead, so a little wide). Prophet's
calibration fit starts its optimiser from the full fit's parameters (a warm start: it
converges in fewer steps), and the full fit from the previous refit's when the caller keeps
them (``ModelContext.prophet_state``). A fit that fails falls back to the previous-day
seasonal naive, with a reason.

Prophet for demand: daily (Fourier order 10) and weekly seasonality, the configured
country's public holidays, and the temperature as a regressor when the weather provider
has it. Prophet for PV: daily seasonality (order 12) and the clear-sky PV power as a
regressor, plus the provider's irradiance when it has it; the result is clipped to
``[0, capacity]`` and is 0 at night. MSTL: daily and weekly seasons for demand (daily only
for PV, or under three weeks of history) with statsforecast's default AutoETS trend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from wattmesh.forecasting import _prophet
from wattmesh.forecasting._baselines import naive_lag
from wattmesh.forecasting._context import Job
from wattmesh.forecasting._intervals import PointRun
from wattmesh.forecasting._pv import clearsky_wh

__all__ = ["mstl", "prophet"]

_log = logging.getLogger(__name__)
_MAX_REASON_CHARS = 300
MIN_FIT_DAYS = 3
"""Fewer days of history than this and the fitted models fall back to seasonal naive."""
MIN_PAST_DAYS = 1
"""Days of the model's own past forecasts that replace its calibration fit."""

Fit = Callable[[int, int], list[float]]
"""``fit(train_len, steps)``: fit on the first ``train_len`` values, forecast ``steps``."""


def _two_fits(job: Job, fit: Fit, model: str) -> PointRun:
    n = len(job.values)
    if n < MIN_FIT_DAYS * job.season:
        substitute = naive_lag(job, days=1, model="naive-day")
        reason = f"history of {n} intervals is under {MIN_FIT_DAYS} days: seasonal naive"
        return PointRun(substitute.values, substitute.calib, model=model, fallback_reason=reason)
    past = _past(job, model)
    try:
        values = fit(n, job.horizon)
        m = job.calib_len
        if past:
            calib: Sequence[float] = past  # the model's own earlier forecasts: no second fit
        elif m > 0 and n - m >= MIN_FIT_DAYS * job.season:
            calib = fit(n - m, m)
        else:
            calib = []
    except Exception as exc:  # any library failure means: use the substitute, and say so
        _log.debug("%s failed, falling back to seasonal naive", model, exc_info=True)
        substitute = naive_lag(job, days=1, model="naive-day")
        reason = f"{model} failed: {type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
        return PointRun(substitute.values, substitute.calib, model=model, fallback_reason=reason)
    return PointRun(tuple(values), tuple(calib), model=model)


def _past(job: Job, model: str) -> tuple[float, ...]:
    """``model``'s own past forecasts of the history's last intervals (at most the
    calibration length), or () when there is under :data:`MIN_PAST_DAYS` of them."""
    past = job.ctx.past_forecasts.get(model, ())
    keep = min(len(past), len(job.values), job.ctx.calib_days * job.season)
    if keep < MIN_PAST_DAYS * job.season:
        return ()
    return tuple(past[len(past) - keep :])


def _filled(values: Sequence[float | None]) -> list[float] | None:
    """``values`` with gaps filled by the previous value (first by the mean); None if empty."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    last = sum(known) / len(known)
    out: list[float] = []
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out


def _regressors(job: Job) -> dict[str, list[float]]:
    weather = job.weather()
    regs: dict[str, list[float]] = {}
    if job.ctx.kind == "pv":
        regs["clearsky"] = clearsky_wh(job)
        ghi = _filled(weather.ghi_w_m2) if weather is not None else None
        if ghi is not None:
            regs["ghi"] = ghi
    elif weather is not None and (temp := _filled(weather.temp_c)) is not None:
        regs["temp"] = temp
    return regs


def prophet(job: Job, *, model: str) -> PointRun:
    """Prophet with physics or the calendar (see the module docstring)."""
    hist = job.history
    step = hist.interval_s
    pv = job.ctx.kind == "pv"
    regs = _regressors(job)
    state = job.ctx.prophet_state
    warm: dict[str, Any] = dict(state or {})  # the previous fit's parameters, if kept
    full = True

    def fit(train_len: int, steps: int) -> list[float]:
        nonlocal full
        epoch = [hist.start_epoch_s + i * step for i in range(train_len + steps)]
        values = _prophet.fit_predict_with(
            history_epoch_s=epoch[:train_len],
            values_wh=job.values[:train_len],
            future_epoch_s=epoch[train_len:],
            daily_order=12 if pv else 10,
            weekly=not pv,
            regressors={k: v[: train_len + steps] for k, v in regs.items()},
            country=None if pv else job.ctx.country,
            utc_offset_s=job.ctx.utc_offset_s,
            warm=warm,
        )
        if full and state is not None:  # the full fit's parameters: the next refit's start
            state.clear()
            state.update(warm)
        full = False  # the calibration fit then starts from the full fit's parameters
        return values

    return _two_fits(job, fit, model)


def mstl(job: Job, *, model: str) -> PointRun:
    """MSTL from statsforecast (see the module docstring)."""
    import numpy as np
    from statsforecast.models import MSTL

    season = job.season
    y_all = np.asarray(job.values, dtype=float)

    def fit(train_len: int, steps: int) -> list[float]:
        weekly = job.ctx.kind == "demand" and train_len >= 21 * season
        seasons = [season, 7 * season] if weekly else [season]
        result = MSTL(season_length=seasons).forecast(y=y_all[:train_len], h=steps)
        return [float(v) for v in result["mean"]]

    return _two_fits(job, fit, model)
