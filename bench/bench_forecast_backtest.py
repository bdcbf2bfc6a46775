"""The forecast backtests on the real-data extracts in tests/data/, as Markdown tables.

Runs ``forecasting.backtesting.run_backtest`` exactly as ``wattmesh forecast backtest`` does
(14 origins a day apart, 24 h ahead, 60-day window) on: the UCI household's demand, the
simulated 18-household neighbourhood built from it, and the 5 kWp Greensboro PV without and
with the recorded weather. Prints each table (the one-day seasonal naive baseline is always
a row) with the selected model and the run's wall time, after the machine line. The tables in
docs/forecasting.md come from this script.

Usage: ``python bench/bench_forecast_backtest.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line

from wattmesh.forecasting.backtesting import BacktestReport, parse_measured_csv, run_backtest
from wattmesh.forecasting.models import ModelContext, PvSite
from wattmesh.forecasting.weather import RecordedWeather

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SITE = PvSite(36.1, -79.95, 30.0, 180.0, 273.0)


def _table(title: str, report: BacktestReport, seconds: float) -> None:
    out = report.to_json()
    pv = report.target == "pv"
    cols = ["mae_w", "rmse_w", "mase", "coverage_80", "width_80_w", "nmae"]
    cols += ["daylight_mae_w", "nrmse_capacity"] if pv else []
    print(f"\n### {title}\n")
    print(
        f"{out['origins']} origins, {out['horizon_h']} h ahead, {out['window_days']}-day window, "
    )
    print(f"{out['gaps']} gap intervals; {seconds:.1f} s for the whole backtest.\n")
    print("| model | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in out["models"].items():
        label = f"**{name}** (selected)" if name == out["selected"] else name
        print(f"| {label} | " + " | ".join(str(row[c]) for c in cols) + " |")


def _run(title: str, file: str, ctx: ModelContext) -> None:
    series = parse_measured_csv((DATA / file).read_text(), name=file)
    ctx = ModelContext(
        kind=ctx.kind,
        capacity_w=ctx.capacity_w,
        site=ctx.site,
        weather=ctx.weather,
        country=ctx.country,
        utc_offset_s=series.utc_offset_s,
    )
    started = time.perf_counter()
    report = run_backtest(series, ctx=ctx, horizon_s=86_400, origins=14)
    _table(title, report, time.perf_counter() - started)


def main() -> int:
    print(machine_line())
    _run(
        "One household's demand (UCI)",
        "uci_household_demand.csv",
        ModelContext("demand", country="FR"),
    )
    _run(
        "Simulated neighbourhood of 18 households (from the UCI house)",
        "uci_neighbourhood18_demand.csv",
        ModelContext("demand", country="FR"),
    )
    _run(
        "PV, 5 kWp, no weather input",
        "greensboro_pv_5kwp.csv",
        ModelContext("pv", capacity_w=5000, site=SITE),
    )
    weather = RecordedWeather.from_csv(DATA / "greensboro_weather.csv")
    _run(
        "PV, 5 kWp, with the recorded weather as a perfect forecast",
        "greensboro_pv_5kwp.csv",
        ModelContext("pv", capacity_w=5000, site=SITE, weather=weather),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
