"""Ledger memory over many intervals: does the process grow with the log?

A ledger of H households (SQLite) goes through K intervals, each with a signed reading
and order per household (``bench_verify.interval_messages``, taken in with
``Ledger.ingest_many``, signatures checked inline), and prints
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
from bench_verify import MARKET, STEP, T0, TARIFF, interval_messages

from wattmesh.broker.keys import SigningKey
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore


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
    seq = dict.fromkeys(keys, 0)
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
            items = interval_messages(keys, registers, seq, rng, interval)
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
