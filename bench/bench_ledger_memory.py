"""Ledger memory over many intervals: does the process grow with the log?

A ledger of H households (SQLite) goes through K intervals, each with a signed reading
and order per household (``Ledger.ingest_many``, signatures checked inline), and prints
the process's resident memory after each tenth close (after a full collection), and
the message ids it holds to tell redeliveries from replays. With memory bounded by the
households, the RSS levels off; a ledger that keeps something per message grows by a
fixed amount per interval. Run the same command on an older commit for the baseline
(``PYTHONPATH=OLD_TREE python OLD_TREE/bench/bench_ledger_memory.py``).

    python bench/bench_ledger_memory.py [--households 2000] [--intervals 60]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import time
from pathlib import Path

from _machine import machine_line

from broker.keys import SigningKey
from broker.messages import OrderBody, ReadingBody, Side, sign_message
from ledger.clearing import GridTariff
from ledger.ledger import Ledger
from ledger.store import LedgerStore

MARKET = "bench"
STEP = 900
T0 = 1_750_000_500 - 1_750_000_500 % STEP
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=2_000)
    parser.add_argument("--intervals", type=int, default=60)
    args = parser.parse_args()
    print(machine_line())
    rng = random.Random(1)
    keys = {f"h{i:05d}": SigningKey.generate() for i in range(args.households)}
    registers = dict.fromkeys(keys, 0)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(
            LedgerStore(f"sqlite:///{Path(tmp) / 'ledger.db'}"),
            market_id=MARKET,
            operator_key=SigningKey.generate(),
        )
        ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0)
        start = time.perf_counter()
        for k in range(args.intervals):
            interval = T0 + k * STEP
            items: list[tuple[bytes, str | None]] = []
            for agent, key in keys.items():
                registers[agent] += rng.randint(0, 800)
                bodies = (
                    ReadingBody(interval, registers[agent], 0, 0, 0),
                    OrderBody(
                        Side.BUY if rng.random() < 0.5 else Side.SELL,
                        rng.randint(50, 2_000),
                        rng.randint(80_000, 300_000),
                    ),
                )
                for seq, body in enumerate(bodies, start=2 * k + 1):
                    message = sign_message(
                        key,
                        body,
                        market=MARKET,
                        interval=interval,
                        agent=agent,
                        seq=seq,
                        expires=interval + STEP,
                    )
                    items.append((message.to_wire(), agent))
            ledger.open_interval(interval, TARIFF)
            ledger.ingest_many(items)
            ledger.close_interval()
            if k == 0 or (k + 1) % 10 == 0:
                gc.collect()
                kept = getattr(ledger, "kept_message_ids", None)
                print(
                    f"after interval {k + 1:3}: {ledger.size:9,} entries, RSS {rss_mb():7.1f} MB"
                    + ("" if kept is None else f", message ids held {kept:,}")
                    + f"  ({time.perf_counter() - start:.0f} s)"
                )
        ledger.store.close()


if __name__ == "__main__":
    main()
