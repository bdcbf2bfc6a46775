"""Ledger restart: from the latest state snapshot, against replaying the whole log.

Builds a SQLite ledger through the real ingest path (``bench_verify.build``: per
interval a signed reading and order per household, the clearing, trades, settlements,
postings, a checkpoint), then times, in the same run, opening the ledger again (a) from
the snapshot its last close stored and (b) with the snapshot deleted, replaying every
entry (how every restart went before snapshots; the baseline). Both must give the same
state. Also prints the snapshot's size and the time to encode it at a close (it is
written in the close's transaction) and to decode it; what the start check adds to a
restart from the snapshot (``ledger/startcheck.py``: the checkpoint's signature, the
multi-leaf proof of the key entries the snapshot names, the tail against the latest
signed checkpoint), the background check of the whole log ``ledger run`` starts
(``ledger/logcheck.py``: inline, one process, read-only) and ``ledger verify`` (its
default workers).

    python bench/bench_restart.py [--entries 200000] [--households 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _machine import machine_line
from bench_verify import MARKET, build

from wattmesh.broker.keys import SigningKey
from wattmesh.ledger._snapshot import decode_snapshot, encode_snapshot
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.logcheck import check_log
from wattmesh.ledger.startcheck import check_in_tree, check_latest_checkpoint, check_signed
from wattmesh.ledger.store import SNAPSHOT_TABLE, LedgerStore
from wattmesh.ledger.verify import verify_ledger


def timed_start_check(url: str) -> float:
    """What the start check adds to a restart from the snapshot: the checks alone, on
    the snapshot the restore decodes and the key entries it reads anyway."""
    store = LedgerStore(url)
    stored = store.latest_snapshot()
    assert stored is not None
    size, data = stored
    decoded = decode_snapshot(data, None)
    entries = store.entries_at(decoded.key_entries)
    checkpoint = store.checkpoint_at(size)
    assert checkpoint is not None
    start = time.perf_counter()
    check_signed(store, checkpoint)
    check_in_tree(store, entries, decoded.state.tree)
    check_latest_checkpoint(store, decoded.state.tree.copy())  # no entries after it here
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def timed_restart(url: str, operator: SigningKey) -> tuple[float, bytes]:
    start = time.perf_counter()
    ledger = Ledger(LedgerStore(url), market_id=MARKET, operator_key=operator)
    elapsed = time.perf_counter() - start
    state = encode_snapshot(ledger.state())
    ledger.store.close()
    return elapsed, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--households", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        start = time.perf_counter()
        ledger = build(url, args.entries, args.households)
        operator = ledger.operator_key
        print(
            f"built {ledger.size:,} entries, {args.households:,} households, "
            f"{(ledger.size // args.households)} entries per household, "
            f"in {time.perf_counter() - start:.1f} s"
        )
        state = ledger.state()
        encode_s = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            data = encode_snapshot(state)
            encode_s.append(time.perf_counter() - t)
        decode_s = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            decode_snapshot(data, None)
            decode_s.append(time.perf_counter() - t)
        live = encode_snapshot(state)
        ledger.store.close()
        print(
            f"snapshot: {len(data) / 1e6:.2f} MB, encode {statistics.median(encode_s) * 1e3:.0f} ms"
            f" (at every close), decode {statistics.median(decode_s) * 1e3:.0f} ms"
            f" (medians of {args.repeat})"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        from_snapshot = []
        for _ in range(args.repeat):
            elapsed, restored = timed_restart(url, operator)
            assert restored == live, "restart from the snapshot gave another state"
            from_snapshot.append(elapsed)
        checks = [timed_start_check(url) for _ in range(args.repeat)]
        snapshot = LedgerStore(url).latest_snapshot()
        background = check_log(url, ledger.size, operator.verifying, snapshot=snapshot)
        assert background.problem is None, background.problem
        verify_only = check_log(url, ledger.size, operator.verifying)
        verify_s = []
        for _ in range(args.repeat):
            store = LedgerStore(url)
            t = time.perf_counter()
            report = verify_ledger(store, operator.verifying)
            verify_s.append(time.perf_counter() - t)
            store.close()
            assert report.ok, report.problem
        store = LedgerStore(url)
        with store.engine.begin() as conn:
            saved = conn.execute(sa.text(f"SELECT tree_size, data FROM {SNAPSHOT_TABLE}")).all()
            conn.execute(sa.text(f"DELETE FROM {SNAPSHOT_TABLE}"))
        replayed = []
        for _ in range(args.repeat):
            elapsed, restored = timed_restart(url, operator)
            assert restored == live, "replaying the log gave another state"
            replayed.append(elapsed)  # (a restart writes no snapshot; only closes do)
        store.close()
        assert saved, "the last close stored no snapshot"
        snap, full = statistics.median(from_snapshot), statistics.median(replayed)
        print(
            f"restart from the snapshot: {snap:.2f} s (median of {args.repeat}; "
            f"{min(from_snapshot):.2f}-{max(from_snapshot):.2f})"
        )
        check = statistics.median(checks)
        print(
            f"  of which the start check: {check * 1e3:.0f} ms (median of {args.repeat}; "
            f"{min(checks) * 1e3:.0f}-{max(checks) * 1e3:.0f} ms)"
        )
        print(
            f"background check (inline, one process): {background.seconds:.2f} s, "
            f"of which verify {verify_only.seconds:.2f} s "
            f"({ledger.size / verify_only.seconds:,.0f} entries/s) and the replay "
            f"compared with the snapshot the rest"
        )
        best = min(verify_s)
        print(
            f"ledger verify (default workers): {best:.2f} s best of {args.repeat} "
            f"({ledger.size / best:,.0f} entries/s; {min(verify_s):.2f}-{max(verify_s):.2f} s)"
        )
        print(
            f"baseline, replaying all {ledger.size:,} entries: {full:.2f} s "
            f"({ledger.size / full:,.0f} entries/s; "
            f"{min(replayed):.2f}-{max(replayed):.2f}); x{full / snap:.1f}"
        )


if __name__ == "__main__":
    main()
