"""Wall time of `wattmesh simulate` for 20 households x 2 days (seed 1).

Runs the same scenario with the seasonal-naive forecaster (the baseline: no model
fitting, so what is left is messaging, signing, clearing and logging) and with Prophet,
each over a private Mosquitto and a SQLite ledger, and prints the wall times, the
intervals per second and the share of the time spent fitting forecasts.

    python bench/bench_simulate.py [--households 20] [--days 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _machine import machine_line

from wattmesh.sim.simulate import SimulationConfig, run_simulation


def run(households: int, days: int, seed: int, forecaster: str) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig(
            households=households,
            days=days,
            seed=seed,
            forecaster=forecaster,  # type: ignore[arg-type]
            workdir=Path(tmp),
        )
        start = time.perf_counter()
        report = asyncio.run(run_simulation(config))
        return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=20)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(machine_line())
    times = {}
    for forecaster in ("naive", "prophet"):
        elapsed, report = run(args.households, args.days, args.seed, forecaster)
        assert report["verified"], report.get("verify_problem")
        times[forecaster] = elapsed
        print(
            f"{forecaster:>8}: {elapsed:6.1f} s wall for {report['intervals']} intervals "
            f"({int(report['intervals']) / elapsed:.1f} intervals/s), broker {report['broker']}, "
            f"{report['trades']} trades, ledger root {str(report['ledger_root'])[:16]}"
        )
    print(
        f"Prophet adds {times['prophet'] - times['naive']:.1f} s "
        f"({times['prophet'] / times['naive']:.1f}x the naive run)"
    )


if __name__ == "__main__":
    main()
