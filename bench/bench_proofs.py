"""Inclusion proofs from the stored tree of a large log (SQLite), beside a naive baseline.

Builds a log of N leaves directly in the ledger's tables with a fast bulk path (raw
``executemany`` of the leaf rows and of every complete subtree hash, computed level by
level), then times ``inclusion_proof_from_source`` (one batched read of O(log n) rows,
then the folds) for random leaves against the whole tree, checks each proof with the
RFC 9162 verifier, and prints the median. Baseline in the same run: the naive way,
reading all leaf hashes and computing the proof in memory (at N, or at --baseline-leaves
if N is larger).

    python bench/bench_proofs.py [--leaves 1000000] [--proofs 200] [--db sqlite:///x.db]
    python bench/bench_proofs.py --leaves 10000000     # the issue's size: takes minutes
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path

from _machine import machine_line

from wattmesh.broker.tlog import verify_inclusion_hash
from wattmesh.ledger._merkle import inclusion_proof_from_hashes
from wattmesh.ledger.proofs import (
    inclusion_proof_from_source,
    inclusion_ranges,
    range_nodes,
    root_from_source,
)
from wattmesh.ledger.store import LedgerStore

_sha = hashlib.sha256
BLOCK_LEVEL = 16
BLOCK = 1 << BLOCK_LEVEL


def _pair(layer: list[bytes]) -> list[bytes]:
    return [_sha(b"\x01" + layer[i] + layer[i + 1]).digest() for i in range(0, len(layer) - 1, 2)]


def bulk_build(store: LedgerStore, leaves: int) -> None:
    """Write ``leaves`` leaf rows and every complete aligned subtree hash into an empty
    store, in aligned blocks of 2**16 leaves (all levels inside a block), then the
    levels above the blocks from the block roots."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        tops: list[bytes] = []
        for first in range(0, leaves, BLOCK):
            end = min(first + BLOCK, leaves)
            datas = [b'{"kind":"clearing","n":%d}' % i for i in range(first, end)]
            layer = [_sha(b"\x00" + d).digest() for d in datas]
            cursor.executemany(
                "INSERT INTO log_entry (idx, interval, kind, data, leaf_hash) "
                "VALUES (?, 0, 'clearing', ?, ?)",
                list(zip(range(first, end), datas, layer, strict=True)),
            )
            rows, level = [], 0
            while len(layer) > 1:
                level += 1
                layer = _pair(layer)
                rows += [(level, (first >> level) + i, h) for i, h in enumerate(layer)]
            cursor.executemany("INSERT INTO merkle_node (level, idx, hash) VALUES (?, ?, ?)", rows)
            if end - first == BLOCK:
                tops.append(layer[0])
            raw.commit()
        level, layer, rows = BLOCK_LEVEL, tops, []
        while len(layer) > 1:
            level += 1
            layer = _pair(layer)
            rows += [(level, i, h) for i, h in enumerate(layer)]
        cursor.executemany("INSERT INTO merkle_node (level, idx, hash) VALUES (?, ?, ?)", rows)
        raw.commit()
    finally:
        raw.close()


def time_proofs(store: LedgerStore, size: int, count: int, rng: random.Random) -> list[float]:
    root = root_from_source(store, size)
    times = []
    for _ in range(count):
        index = rng.randrange(size)
        start = time.perf_counter()
        proof = inclusion_proof_from_source(store, index, size)
        times.append(time.perf_counter() - start)
        (leaf,) = store.node_hashes([(0, index)])
        if not verify_inclusion_hash(leaf, index, size, proof, root):
            raise SystemExit(f"proof of {index} does not verify")
    return times


def naive(store: LedgerStore, size: int, rng: random.Random) -> tuple[float, list[bytes], int]:
    """Read all leaf hashes, build the proof in memory."""
    index = rng.randrange(size)
    start = time.perf_counter()
    hashes = store.leaf_hashes()[:size]
    proof = inclusion_proof_from_hashes(hashes, index)
    return time.perf_counter() - start, proof, index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--baseline-leaves", type=int, default=1_000_000)
    parser.add_argument("--db", help="reuse or build this SQLite database (default: temp)")
    args = parser.parse_args()
    print(machine_line())
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'proofs.db'}"
        store = LedgerStore(url)
        if store.size() == 0:
            start = time.perf_counter()
            bulk_build(store, args.leaves)
            print(f"bulk-built {args.leaves:,} leaves in {time.perf_counter() - start:.1f} s")
        size = store.size()
        print(f"log of {size:,} leaves, {store.node_count():,} stored nodes")
        times = time_proofs(store, size, args.proofs, rng)
        rows = sum(len(range_nodes(a, b)) for a, b in inclusion_ranges(size // 3, size))
        print(
            f"inclusion proof at {size:,}: median {statistics.median(times) * 1e3:.2f} ms, "
            f"p95 {sorted(times)[int(0.95 * len(times))] * 1e3:.2f} ms "
            f"over {len(times)} random leaves; about {rows} rows read per proof"
        )
        small = min(size, args.baseline_leaves)
        small_times = time_proofs(store, small, args.proofs, rng)
        print(
            f"inclusion proof at {small:,} (same store): median "
            f"{statistics.median(small_times) * 1e3:.2f} ms"
        )
        elapsed, proof, index = naive(store, small, rng)
        if proof != inclusion_proof_from_source(store, index, small):
            raise SystemExit("naive and stored proofs differ")
        print(f"baseline at {small:,}: read all leaf hashes + in-memory proof: {elapsed:.2f} s")
        store.close()


if __name__ == "__main__":
    main()
