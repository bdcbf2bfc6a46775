"""What ``forecast serve`` publishes from a stored fit: the forecast body of an interval."""

from __future__ import annotations

from wattmesh.broker.messages import ForecastBody
from wattmesh.forecasting._fit import CATALOG_AUTO, Fitted
from wattmesh.forecasting.history import StoredFit

__all__ = ["body_of", "covers", "was_chosen"]


def was_chosen(fitted: Fitted) -> bool:
    """Whether ``fitted`` is a model ``auto``'s backtest chose (not a stand-in)."""
    return fitted.model in CATALOG_AUTO and fitted.fallback is None


def covers(fit: StoredFit, interval: int, horizon: int) -> bool:
    offset = (interval - fit.demand.start_s) // fit.demand.interval_s
    return offset >= 0 and offset + horizon <= len(fit.demand.p50_wh)


def body_of(fit: StoredFit, interval: int, horizon: int, *, issued_s: int) -> ForecastBody:
    d, p = fit.demand, fit.pv
    a = (interval - d.start_s) // d.interval_s
    b = a + horizon
    return ForecastBody(
        start=interval,
        interval_s=d.interval_s,
        demand_wh=d.p50_wh[a:b],
        pv_wh=p.p50_wh[a:b],
        model=d.model if d.model == p.model else f"{d.model}+{p.model}",
        fallback=d.fallback or p.fallback,
        version=d.version if d.version == p.version else f"{d.version}+{p.version}",
        issued_s=issued_s,
        trained_on=fit.trained_on,
        demand_p10_wh=d.p10_wh[a:b],
        demand_p90_wh=d.p90_wh[a:b],
        pv_p10_wh=p.p10_wh[a:b],
        pv_p90_wh=p.p90_wh[a:b],
    )
