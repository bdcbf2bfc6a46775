"""``wattmesh forecast backtest``: rolling-origin backtest of the forecast models on a CSV file.

``--data FILE.csv --target demand|pv --horizon 24h --origins 14 [--models LIST]
[--capacity-w W] [--site LAT,LON[,TILT,AZIMUTH]] [--weather FILE.csv] [--country CC]
[--window-days 60] [--json]``. Prints a table (or, with ``--json``, one JSON object, see
:meth:`wattmesh.forecasting.backtesting.BacktestReport.to_json`). A bad file or argument is
one error line and exit 2 (:class:`ConfigError`).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from wattmesh.broker.errors import ConfigError

__all__ = ["add_backtest_command", "duration_s", "run_backtest_command"]

_DURATION = re.compile(r"^\s*(\d+)\s*(h|m|min)\s*$")


def duration_s(text: str) -> int:
    """``24h`` or ``90m`` as seconds (otherwise a usage error, exit 2)."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"want a duration such as 24h or 90m, got {text!r}")
    return int(match.group(1)) * (3600 if match.group(2) == "h" else 60)


def add_backtest_command(forecast_sub: Any) -> None:
    """Register ``backtest`` under the ``forecast`` command group (stdlib only at import)."""
    bt = forecast_sub.add_parser("backtest", help="backtest the forecast models on a CSV file")
    bt.add_argument("--data", required=True, help="CSV with timestamp,value_w (W per interval)")
    bt.add_argument(
        "--target", required=True, choices=("demand", "pv"), help="what the file measures"
    )
    bt.add_argument("--horizon", type=duration_s, default=86_400, help="e.g. 24h (default), 90m")
    bt.add_argument("--origins", type=int, default=14, help="forecast origins a day apart (14)")
    bt.add_argument("--models", help="comma-separated model names (default: all)")
    bt.add_argument("--capacity-w", type=int, help="the PV system's capacity in W (PV: required)")
    bt.add_argument("--site", help="PV site LAT,LON[,TILT,AZIMUTH] in degrees, for clear sky")
    bt.add_argument("--weather", help="weather CSV: timestamp,ghi_w_m2,temp_c[,cloud]")
    bt.add_argument("--country", help="ISO 3166 country whose holidays the demand model knows")
    bt.add_argument("--window-days", type=int, default=60, help="training window (default 60)")
    bt.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    bt.set_defaults(func=run_backtest_command)


def _site(text: str | None) -> Any:
    from wattmesh.forecasting.models import PvSite

    if text is None:
        return None
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 4) or not (-90 <= parts[0] <= 90 and -180 <= parts[1] <= 180):
        raise ConfigError(f"--site wants LAT,LON[,TILT,AZIMUTH] in degrees, got {text!r}")
    return PvSite(*parts)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {why}") from exc


def run_backtest_command(args: argparse.Namespace) -> int:
    """Run the backtest and print it; errors are :class:`ConfigError` (exit 2)."""
    from wattmesh.forecasting.backtesting import parse_measured_csv, run_backtest
    from wattmesh.forecasting.models import ModelContext
    from wattmesh.forecasting.weather import RecordedWeather

    if args.origins < 1 or args.window_days < 2:
        raise ConfigError("--origins must be >= 1 and --window-days >= 2")
    if args.target == "pv" and (args.capacity_w is None or args.capacity_w <= 0):
        raise ConfigError("--target pv needs --capacity-w, the system's capacity in W (> 0)")
    series = parse_measured_csv(_read(args.data), name=args.data)
    weather = (
        RecordedWeather.parse(_read(args.weather), name=args.weather) if args.weather else None
    )
    ctx = ModelContext(
        kind=args.target,
        capacity_w=args.capacity_w if args.target == "pv" else None,
        site=_site(args.site),
        weather=weather,
        country=args.country,
        utc_offset_s=series.utc_offset_s,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    report = run_backtest(
        series,
        ctx=ctx,
        horizon_s=args.horizon,
        origins=args.origins,
        models=models,
        window_days=args.window_days,
    )
    out = report.to_json()
    if args.json:
        print(json.dumps(out, sort_keys=False))
        return 0
    _print_table(out)
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_table(out: dict[str, Any]) -> None:
    cols = ["mae_w", "rmse_w", "mase", "coverage_80", "width_80_w", "nmae"]
    if out["target"] == "pv":
        cols += ["daylight_mae_w", "nrmse_capacity"]
    print(
        f"{out['target']}: {out['origins']} origins, {out['horizon_h']} h ahead, "
        f"{out['window_days']}-day window, {out['gaps']} gap intervals"
    )
    print(" ".join([f"{'model':<15}"] + [f"{c:>14}" for c in cols]))
    for name, row in out["models"].items():
        mark = " *" if name == out["selected"] else ""
        cells = [f"{_cell(row[c]):>14}" for c in cols]
        print(" ".join([f"{name + mark:<15}", *cells]))
    print(f"selected: {out['selected']}")
