"""How good the agent's own forecast is at its horizon: the next interval.

The agent forecasts the interval that has just opened, knowing its energy up to the
interval before (agents/_selfcast.py). This replays a measured series through the
agent's own code (cumulative registers into a :class:`ReadingRing`, one reading per
interval, :meth:`ReadingRing.forecast` for each interval) and scores it against the
baselines in the same run: persistence (the last interval), the previous day's same
slot and the same slot's mean over the last 7 days (the best simple day-ahead
baseline for one household, ../shared/notes/forecasting.md). Scores are the mean
absolute error of the net grid energy (Wh per interval) over every interval from the
8th day on, so every rule has its full history, and, per rule, by the agent's days
of history (1, 3 and 7 days: the agent's forecast with only that much kept).

Input: the CSV format of ``wattmesh forecast backtest`` (``timestamp,value_w``, one
regular interval). ``--demand`` is the household's demand; ``--pv`` (optional) a PV
series laid on the same rows (scaled by ``--pv-scale``), so the house exports when
PV exceeds demand, as a grid meter without a PV register sees it.

    .venv/bin/python bench/bench_selfcast.py --demand tests/data/uci_household_demand.csv \\
        [--pv tests/data/greensboro_pv_5kwp.csv --pv-scale 0.6]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import machine_line  # noqa: E402
from wattmesh.agents._selfcast import DAY_S, ReadingRing, Registers  # noqa: E402

WEEK = 7


def _series(path: Path) -> tuple[int, list[float]]:
    """(interval_s, values in W) of a ``timestamp,value_w`` CSV."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stamps = [int(datetime.fromisoformat(r["timestamp"]).timestamp()) for r in rows]
    interval_s = stamps[1] - stamps[0]
    if any(b - a != interval_s for a, b in pairwise(stamps)):
        raise SystemExit(f"{path}: not one regular interval without gaps")
    return interval_s, [float(r["value_w"]) for r in rows]


def _net_wh(args: argparse.Namespace) -> tuple[int, list[int]]:
    interval_s, demand_w = _series(args.demand)
    pv_w = [0.0] * len(demand_w)
    if args.pv is not None:
        pv_interval_s, pv = _series(args.pv)
        if pv_interval_s != interval_s:
            raise SystemExit("demand and PV have different intervals")
        pv_w = [p * args.pv_scale for p in pv[: len(demand_w)]]
        demand_w = demand_w[: len(pv_w)]
    pairs = zip(demand_w, pv_w, strict=True)
    return interval_s, [round((d - p) * interval_s / 3600) for d, p in pairs]


def _registers(net_wh: list[int], interval_s: int, start: int) -> list[Registers]:
    """The grid meter's readings at each interval's start (import, export only)."""
    readings, imported, exported = [], 0, 0
    for k, net in enumerate([*net_wh, 0]):
        readings.append(Registers(start + k * interval_s, imported, exported))
        imported, exported = imported + max(net, 0), exported + max(-net, 0)
    return readings


def _agent(net_wh: list[int], interval_s: int, keep_days: int) -> Callable[[int], int]:
    """The agent's forecast of interval k's net, its ring holding ``keep_days`` days."""
    start = 1_700_000_000 // DAY_S * DAY_S
    readings = _registers(net_wh, interval_s, start)
    per_day = DAY_S // interval_s

    def forecast(k: int) -> int:
        ring = ReadingRing(readings[max(0, k - keep_days * per_day) : k + 1])
        own = ring.forecast(start + k * interval_s, interval_s)
        return 0 if own is None else own.demand_wh - own.pv_wh

    return forecast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demand", type=Path, required=True)
    parser.add_argument("--pv", type=Path)
    parser.add_argument("--pv-scale", type=float, default=1.0)
    args = parser.parse_args()
    interval_s, net = _net_wh(args)
    per_day = DAY_S // interval_s
    first = WEEK * per_day + 1
    rules: dict[str, Callable[[int], float]] = {
        "persistence (baseline)": lambda k: net[k - 1],
        "previous day's slot": lambda k: net[k - per_day],
        "same-slot mean of 7 days": lambda k: sum(net[k - d * per_day] for d in range(1, 8)) / 7,
    }
    for days in (1, 2, 3, WEEK):
        rules[f"agent, {days} day(s) kept"] = _agent(net, interval_s, days)
    print(machine_line())
    pv = f" - {args.pv_scale:g} x {args.pv.name}" if args.pv else ""
    print(f"net = {args.demand.name}{pv}; {len(net)} intervals of {interval_s} s; ", end="")
    print(f"scored on {len(net) - first} (from day 8)")
    baseline = None
    for name, rule in rules.items():
        mae = sum(abs(net[k] - rule(k)) for k in range(first, len(net))) / (len(net) - first)
        baseline = baseline or mae
        print(f"{name:<28}{mae:>9.1f} Wh{mae / baseline:>8.3f}")


if __name__ == "__main__":
    main()
