"""Thin adapter around Prophet: the only module that touches prophet, pandas or cmdstanpy.

Everything heavy is imported lazily inside :func:`fit_predict`, so importing this module
(and ``forecasting._models``) stays cheap. Inputs and outputs are plain Python values:
epoch seconds (UTC) and Wh per interval in, Wh per interval (floats, unrounded) out.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, Literal

# Pandas >= 3.1 deprecates ``inplace=`` and prophet 1.5.0 still uses it internally
# (prophet/forecaster.py). The warning is prophet's to fix, not ours; it is silenced only for
# warnings attributed to prophet's own modules and only while Prophet runs.
_PROPHET_MODULES = r"prophet(\..*)?$"

# Daily Fourier order per target. A PV day is a bell with flat zero nights, which the default
# order (4) smears into negative lobes; a higher order follows the dawn/dusk edges.
_DAILY_ORDER: dict[str, int] = {"demand": 10, "pv": 12}
# The sun keeps no calendar: a weekly term on PV only fits noise.
_WEEKLY: dict[str, bool] = {"demand": True, "pv": False}


def _quiet_loggers() -> None:
    """Drop prophet's and cmdstanpy's per-fit INFO chatter; warnings still propagate.

    ``prophet.plot`` logs an ERROR at import time when plotly is missing; nothing here plots.
    A ``NullHandler`` on ``cmdstanpy`` stops it attaching its own stderr handler on first use.
    Only these three library loggers are touched.
    """
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    logging.getLogger("prophet").setLevel(logging.WARNING)
    cmdstan = logging.getLogger("cmdstanpy")
    if not cmdstan.handlers:
        cmdstan.addHandler(logging.NullHandler())
    cmdstan.setLevel(logging.WARNING)


def _prophet_class() -> Any:
    """Import Prophet lazily (about 1 s the first time) with its loggers quietened."""
    _quiet_loggers()  # before the import: prophet.plot complains while being imported
    from prophet import Prophet

    _quiet_loggers()  # after the import: prophet/forecaster.py resets its logger to INFO
    return Prophet


def fit_predict(
    *,
    history_epoch_s: Sequence[int],
    values_wh: Sequence[int],
    future_epoch_s: Sequence[int],
    kind: Literal["demand", "pv"],
) -> list[float]:
    """Fit Prophet (MAP, no MCMC, no uncertainty sampling) and return yhat in Wh per interval.

    ``history_epoch_s`` and ``future_epoch_s`` are interval start times in UTC epoch seconds;
    Prophet sees them as naive UTC timestamps, so its daily cycle is the UTC day.
    Raises whatever Prophet raises; the caller decides what a failure means.
    """
    prophet_cls = _prophet_class()
    import pandas as pd

    train = pd.DataFrame(
        {
            "ds": pd.to_datetime(list(history_epoch_s), unit="s"),
            "y": [float(v) for v in values_wh],
        }
    )
    future = pd.DataFrame({"ds": pd.to_datetime(list(future_epoch_s), unit="s")})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=_PROPHET_MODULES)
        warnings.filterwarnings("ignore", category=FutureWarning, module=_PROPHET_MODULES)
        model = prophet_cls(
            growth="linear",
            yearly_seasonality=False,
            weekly_seasonality=_WEEKLY[kind],
            daily_seasonality=_DAILY_ORDER[kind],
            mcmc_samples=0,
            uncertainty_samples=0,
        )
        model.fit(train)
        predicted = model.predict(future)
    return [float(v) for v in predicted["yhat"].to_numpy()]


def fit_predict_with(
    *,
    history_epoch_s: Sequence[int],
    values_wh: Sequence[float],
    future_epoch_s: Sequence[int],
    daily_order: int,
    weekly: bool,
    regressors: dict[str, Sequence[float]] | None = None,
    country: str | None = None,
    utc_offset_s: int = 0,
    warm: dict[str, Any] | None = None,
) -> list[float]:
    """Like :func:`fit_predict`, with extra regressors and a country's public holidays.

    ``regressors`` maps a name to its values over the history and then the future
    (``len(history) + len(future)`` floats). ``utc_offset_s`` shifts the timestamps Prophet
    sees to local time, so its days and holidays are the households' own.

    ``warm`` (a warm start): when it holds a previous fit's parameters (``k``, ``m``,
    ``delta``, ``beta``, ``sigma_obs``) the optimiser starts from them (from Prophet's own
    start if they do not fit this model's shape); it is then updated with this fit's.
    """
    prophet_cls = _prophet_class()
    import pandas as pd

    n = len(history_epoch_s)
    stamps = pd.to_datetime(
        [t + utc_offset_s for t in (*history_epoch_s, *future_epoch_s)], unit="s"
    )
    train = pd.DataFrame({"ds": stamps[:n], "y": [float(v) for v in values_wh]})
    future = pd.DataFrame({"ds": stamps[n:]})
    for name, series in (regressors or {}).items():
        train[name] = [float(v) for v in series[:n]]
        future[name] = [float(v) for v in series[n:]]

    def make() -> Any:
        model = prophet_cls(
            growth="linear",
            yearly_seasonality=False,
            weekly_seasonality=weekly,
            daily_seasonality=daily_order,
            mcmc_samples=0,
            uncertainty_samples=0,
        )
        if country:
            model.add_country_holidays(country_name=country)
        for name in regressors or {}:
            model.add_regressor(name)
        return model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=_PROPHET_MODULES)
        warnings.filterwarnings("ignore", category=FutureWarning, module=_PROPHET_MODULES)
        model = make()
        if warm and set(warm) >= set(_PARAMS):
            try:
                model.fit(train, init={k: warm[k] for k in _PARAMS})
            except Exception:  # the previous shape does not fit this model: a cold start
                model = make()
                model.fit(train)
        else:
            model.fit(train)
        predicted = model.predict(future)
    if warm is not None:
        warm.update(fitted_params(model))
    return [float(v) for v in predicted["yhat"].to_numpy()]


_PARAMS = ("k", "m", "delta", "beta", "sigma_obs")


def fitted_params(model: Any) -> dict[str, Any]:
    """A fitted Prophet's MAP parameters as plain floats (scalars and lists): a warm start."""
    import numpy as np

    out: dict[str, Any] = {}
    for name in _PARAMS:
        flat = [float(v) for v in np.ravel(model.params[name])]
        out[name] = flat if name in ("delta", "beta") else flat[0]
    return out
