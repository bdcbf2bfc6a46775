"""Clearing N orders with each market mechanism, beside the original uniform auction.

The baseline is ``ledger.mechanisms._auctions.clear_uniform`` (as every ledger ran before
mechanisms were selectable), timed in the same run on the same book. Each mechanism
also returns the grid rest of every order, which the baseline does not. Median of
``--repeat`` runs; a random book, half buys and half sells, limits spread over the
grid's tariffs.

    python bench/bench_mechanisms.py [--sizes 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from _machine import machine_line

from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import GridTariff, Order
from wattmesh.ledger.mechanisms._auctions import clear_uniform
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import MECHANISMS, Mechanism

TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def book(n: int, seed: int) -> list[Order]:
    rng = random.Random(seed)
    return [
        Order(
            f"h{i:06d}",
            Side.BUY if rng.random() < 0.5 else Side.SELL,
            rng.randint(50, 2_000),
            rng.randint(50_000, 350_000),
            f"o{i:06d}",
        )
        for i in range(n)
    ]


def median_s(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    print("| N | mechanism | median | vs baseline | volume Wh | fills |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        orders = book(n, seed=n)
        base_s, base = median_s(lambda o=orders: clear_uniform(o, TARIFF), args.repeat)
        assert hasattr(base, "fills")
        print(
            f"| {n:,} | baseline `clear_uniform` | {base_s * 1000:.0f} ms | 1.0 | "
            f"{base.volume_wh:,} | {len(base.fills):,} |"
        )  # type: ignore[attr-defined]
        variants = [(name, Mechanism(name)) for name in MECHANISMS]
        variants.append(
            ("mmr + fee 10,000", Mechanism("mmr", MarketRules(network_fee_micro_per_kwh=10_000)))
        )
        for label, mechanism in variants:
            t, result = median_s(lambda m=mechanism, o=orders: m.clear(o, TARIFF), args.repeat)
            volume, fills = result.volume_wh, len(result.fills)  # type: ignore[attr-defined]
            ratio = t / base_s
            print(f"| {n:,} | {label} | {t * 1000:.0f} ms | {ratio:.2f} | {volume:,} | {fills:,} |")


if __name__ == "__main__":
    main()
