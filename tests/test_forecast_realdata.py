"""The issue's day-ahead targets, on the committed real-data extracts (tests/data/README.md):
14 origins a day apart, 24 h ahead, a 60-day window, every model, the selected one scored.

* one household's demand (UCI): the selected model's MASE <= 0.80;
* the simulated neighbourhood (18 households from the UCI house): normalised MAE <= 15 %;
* 5 kWp PV (TMY3 weather through PVWatts), no weather input: MASE <= 0.95 and nRMSE <= 12 %
  of capacity.

The models were tuned on other periods (scripts/make_forecast_data.py ``--tuning``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wattmesh.forecasting.backtesting import BacktestReport, parse_measured_csv, run_backtest
from wattmesh.forecasting.models import ModelContext, PvSite

DATA = Path(__file__).resolve().parent / "data"
GREENSBORO = PvSite(36.1, -79.95, 30.0, 180.0, 273.0)

pytestmark = pytest.mark.slow


def _backtest(file: str, ctx: ModelContext) -> BacktestReport:
    series = parse_measured_csv((DATA / file).read_text(), name=file)
    assert series.gaps == 0
    ctx = ModelContext(
        kind=ctx.kind,
        capacity_w=ctx.capacity_w,
        site=ctx.site,
        country=ctx.country,
        utc_offset_s=series.utc_offset_s,
    )
    report = run_backtest(series, ctx=ctx, horizon_s=86_400, origins=14)
    assert report.origins == 14
    for name, score in report.models.items():
        assert score.fallbacks == 0, name
    return report


def test_household_demand_selected_model_beats_mase_0_80() -> None:
    report = _backtest("uci_household_demand.csv", ModelContext("demand", country="FR"))
    chosen = report.models[report.selected]
    assert chosen.mase <= 0.80
    assert chosen.mae_w < report.models["naive-day"].mae_w
    assert 0.6 <= chosen.coverage_80 <= 0.95


def test_neighbourhood_demand_normalised_mae_within_15_percent() -> None:
    report = _backtest("uci_neighbourhood18_demand.csv", ModelContext("demand", country="FR"))
    chosen = report.models[report.selected]
    assert chosen.nmae <= 0.15
    assert 0.6 <= chosen.coverage_80 <= 0.95


def test_pv_without_weather_reaches_mase_0_95_and_nrmse_12_percent() -> None:
    ctx = ModelContext("pv", capacity_w=5000, site=GREENSBORO)
    report = _backtest("greensboro_pv_5kwp.csv", ctx)
    chosen = report.models[report.selected]
    assert chosen.mase <= 0.95
    assert chosen.nrmse_capacity is not None and chosen.nrmse_capacity <= 0.12
    assert 0.6 <= chosen.coverage_80 <= 0.99
