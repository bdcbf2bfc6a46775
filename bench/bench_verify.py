"""``ledger verify`` throughput on a generated ledger of real signed readings and orders.

Builds (once per run, through the real ingest path) a SQLite ledger of about N entries:
H households, each interval a signed reading and a signed order per household, the
clearing, the trades and the settlements, one signed checkpoint per interval. Then
times the full verification (every hash, signature, stored tree node, checkpoint note,
consistency proof between consecutive checkpoints, and the market replayed from the log)
inline and with worker processes, each with and without the replay (alternated, so
the replay's cost is measured in the same run),
and beside it, in the same run, the naive Merkle baseline: recompute every checkpoint's
root from all leaf hashes up to its size.

    python bench/bench_verify.py [--entries 100000] [--households 500] [--db sqlite:///x.db]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from _machine import machine_line

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, ReadingBody, Side, sign_message
from wattmesh.ledger._merkle import CompactRange, root_from_leaf_hashes
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import stored_operator_key, verify_ledger

MARKET = "bench"
T0 = 1_750_000_500 - 1_750_000_500 % 900
STEP = 900
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def interval_messages(
    keys: dict[str, SigningKey],
    registers: dict[str, int],
    seq: dict[str, int],
    rng: random.Random,
    interval: int,
) -> list[tuple[bytes, str | None]]:
    """Each household's signed reading (its import register advanced by 0-800 Wh) and
    order for ``interval``, as ``(wire, agent)``; ``registers`` and ``seq`` advance."""
    items: list[tuple[bytes, str | None]] = []
    for agent, key in keys.items():
        registers[agent] += rng.randint(0, 800)
        for body in (
            ReadingBody(interval, registers[agent], 0, 0, 0),
            OrderBody(
                Side.BUY if rng.random() < 0.5 else Side.SELL,
                rng.randint(50, 2_000),
                rng.randint(80_000, 300_000),
            ),
        ):
            seq[agent] += 1
            message = sign_message(
                key,
                body,
                market=MARKET,
                interval=interval,
                agent=agent,
                seq=seq[agent],
                expires=interval + STEP,
            )
            items.append((message.to_wire(), agent))
    return items


def build(url: str, entries: int, households: int, seed: int = 1) -> Ledger:
    rng = random.Random(seed)
    keys = {f"h{i:05d}": SigningKey.generate() for i in range(households)}
    ledger = Ledger(LedgerStore(url), market_id=MARKET, operator_key=SigningKey.generate())
    ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0)
    seq = dict.fromkeys(keys, 0)
    registers = dict.fromkeys(keys, 0)
    interval = T0
    while ledger.size < entries:
        ledger.open_interval(interval, TARIFF)
        for wire, _agent in interval_messages(keys, registers, seq, rng, interval):
            ledger.ingest(wire)
        ledger.close_interval()
        interval += STEP
    return ledger


def naive_merkle(store: LedgerStore) -> float:
    """Recompute each checkpoint's root from all leaf hashes up to its size."""
    start = time.perf_counter()
    hashes = store.leaf_hashes()
    for cp in store.checkpoints():
        if root_from_leaf_hashes(hashes[: cp.tree_size]) != cp.root:
            raise SystemExit(f"naive baseline disagrees at size {cp.tree_size}")
    return time.perf_counter() - start


def incremental_merkle(store: LedgerStore) -> float:
    """What verify does for the roots: one compact range, compared at each checkpoint."""
    start = time.perf_counter()
    hashes = store.leaf_hashes()
    pending = {cp.tree_size: cp.root for cp in store.checkpoints()}
    tree = CompactRange()
    for h in hashes:
        tree.append_leaf_hash(h)
        if tree.size in pending and pending[tree.size] != tree.root():
            raise SystemExit(f"incremental roots disagree at size {tree.size}")
    return time.perf_counter() - start


def timed_verify(
    store: LedgerStore, workers: int | None, *, replay: bool = True
) -> tuple[float, int, str]:
    """Wall time, entries, and the CPU seconds of this process and of its workers."""
    start, before = time.perf_counter(), os.times()
    key = stored_operator_key(store)  # the ledger this script just wrote
    assert key is not None
    report = verify_ledger(store, key, workers=workers, replay=replay)
    elapsed, after = time.perf_counter() - start, os.times()
    if not report.ok:
        raise SystemExit(f"verify failed: {report.problem}")
    own = after.user - before.user + after.system - before.system
    kids = (
        after.children_user - before.children_user + after.children_system - before.children_system
    )
    return elapsed, report.entries, f"CPU {own:.2f} s + workers {kids:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--households", type=int, default=500)
    parser.add_argument("--db", help="reuse or build this database (default: a temp SQLite)")
    parser.add_argument("--rounds", type=int, default=3, help="each verify variant, alternated")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        store = LedgerStore(url)
        if store.size() < args.entries:
            store.close()
            start = time.perf_counter()
            ledger = build(url, args.entries, args.households)
            print(f"built {ledger.size:,} entries in {time.perf_counter() - start:.1f} s")
            ledger.store.close()
            store = LedgerStore(url)
        kinds: dict[str, int] = {}
        for entry in store.iter_entries():
            kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
        print(f"entries by kind: {kinds}; checkpoints: {len(store.checkpoints())}")
        runs = [
            (f"{label}, {'with' if replay else 'without'} replay", workers, replay)
            for label, workers in (("inline (1 process)", 1), ("2 worker processes", 2))
            for replay in (True, False)
        ]
        for _round in range(args.rounds):
            for label, workers, replay in runs:
                load = os.getloadavg()[0]
                elapsed, n, cpu = timed_verify(store, workers, replay=replay)
                print(
                    f"verify, {label}: {elapsed:.2f} s, {n / elapsed:,.0f} entries/s, {cpu} "
                    f"(load average before: {load:.1f})"
                )
        naive = naive_merkle(store)
        print(f"baseline, naive Merkle recompute per checkpoint (roots only): {naive:.2f} s")
        print(f"ours, incremental compact range (roots only): {incremental_merkle(store):.2f} s")
        store.close()


if __name__ == "__main__":
    main()
