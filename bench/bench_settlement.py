"""Settlement at gate closure for N households, without I/O: metering + postings.

For each N, the median time of `Metering.close` (which readings settle which interval,
checks, estimates, corrections) plus `booking.book` (settlement/correction/flag entries
and their balanced postings, canonical JSON), for an interval where every reading
arrived, and one where 10% are missing (estimated) and are backfilled in the next one
(corrected). Beside it, in the same run, the baseline: the foundation's settlement,
`settle_household` per household from two registers, without postings or entries.
CPU time of this process (`time.process_time`), so that other load on a shared
machine does not count.

    python bench/bench_settlement.py [--sizes 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from _machine import machine_line

from wattmesh.ledger._booking import book
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.metering import Metering
from wattmesh.ledger.settlement import Registers, settle_household

T0 = 1_750_000_500 - 1_750_000_500 % 900
STEP = 900
TARIFF = GridTariff(300_000, 80_000)


def _registers(n: int, rng: random.Random, steps: int) -> list[dict[str, Registers]]:
    series = []
    state = {f"h{i:06d}": (rng.randint(0, 10**6), rng.randint(0, 10**6)) for i in range(n)}
    for k in range(steps):
        series.append({a: Registers(T0 + k * STEP, imp, exp) for a, (imp, exp) in state.items()})
        state = {
            a: (imp + rng.randint(0, 1_500), exp + rng.randint(0, 1_500))
            for a, (imp, exp) in state.items()
        }
    return series


def _fills(agents: list[str], rng: random.Random) -> tuple[Fill, ...]:
    half = len(agents) // 2
    return tuple(
        Fill(b, s, rng.randint(50, 1_000), 150_000, "B", "S")
        for b, s in zip(agents[:half], agents[half:], strict=False)
    )


def run_once(
    series: list[dict[str, Registers]], fills: tuple[Fill, ...], missing: set[str]
) -> float:
    """Time the close of interval 1 (settling 0) and of interval 2 (with backfills)."""
    metering = Metering()
    metering.close(interval=T0, readings=series[0], late={}, settle=None)
    elapsed = 0.0
    for k in (1, 2):
        on_time = {a: r for a, r in series[k].items() if k != 1 or a not in missing}
        late = {(a, T0 + STEP): series[1][a] for a in missing} if k == 2 else {}
        start = time.process_time()
        revisions, flags = metering.close(
            interval=T0 + k * STEP,
            readings=on_time,
            late=late,
            settle=(T0 + (k - 1) * STEP, TARIFF, fills),
        )
        _, entries = book(revisions, flags)
        elapsed += time.process_time() - start
        assert entries
    return elapsed / 2


def baseline(series: list[dict[str, Registers]], fills: tuple[Fill, ...]) -> float:
    """The foundation's settlement of one interval: settle_household and its entry."""
    by_agent: dict[str, list[Fill]] = {}
    for f in fills:
        by_agent.setdefault(f.buyer, []).append(f)
        by_agent.setdefault(f.seller, []).append(f)
    start = time.process_time()
    for agent, end in series[1].items():
        s = settle_household(
            agent=agent,
            interval=T0,
            start=series[0][agent],
            end=end,
            fills=by_agent.get(agent, ()),
            tariff=TARIFF,
        )
        del s
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    for n in args.sizes:
        rng = random.Random(n)
        series = _registers(n, rng, 3)
        agents = sorted(series[0])
        fills = _fills(agents, rng)
        missing = set(rng.sample(agents, n // 10))
        full = statistics.median(run_once(series, fills, set()) for _ in range(args.repeat))
        gaps = statistics.median(run_once(series, fills, missing) for _ in range(args.repeat))
        base = statistics.median(baseline(series, fills) for _ in range(args.repeat))
        print(
            f"N={n:>7,}: settle + postings per interval, all readings {full * 1000:.1f} ms, "
            f"10% missing then backfilled {gaps * 1000:.1f} ms; "
            f"baseline settle_household alone {base * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
