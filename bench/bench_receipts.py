"""Receipts for every household after one interval, beside a naive baseline.

A real :class:`ledger.ledger.Ledger` (SQLite) with H households: two intervals of
signed readings and orders (the second one also settles the first), then times
``ledger._audit_messages.audit_messages`` for the second interval (the signed checkpoint with
its consistency proof and every household's receipt with inclusion proofs, from the
nodes the interval wrote plus the cached left edge of the tree). Baseline in the same
run: one ``inclusion_proof_from_source`` on the store per entry (one query each). Also
prints receipt sizes (JSON bytes) and the household's check of its receipt.

    python bench/bench_receipts.py [--households 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _machine import machine_line

from wattmesh.agents._audit import Auditor, MemoryCheckpointStore
from wattmesh.broker.audit_bodies import CheckpointNoteBody, ReceiptBody
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, ReadingBody, Side, sign_message
from wattmesh.ledger._audit_messages import audit_messages, household_entries
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import IntervalOutcome, Ledger
from wattmesh.ledger.proofs import inclusion_proof_from_source
from wattmesh.ledger.store import LedgerStore

T0 = 1_750_000_500 - 1_750_000_500 % 900
STEP = 900
TARIFF = GridTariff(300_000, 80_000)


def _interval(ledger: Ledger, keys: dict[str, SigningKey], n: int) -> IntervalOutcome:
    interval = T0 + n * STEP
    ledger.open_interval(interval, TARIFF)
    for i, (agent, key) in enumerate(keys.items()):
        seq = 2 * n + 1
        reading = ReadingBody(interval, 1000 * n + i, 500 * n, 0, 0)
        side = Side.BUY if i % 2 else Side.SELL
        order = OrderBody(side, 300 + i % 50, 100_000 + 1000 * (i % 100))
        for s, body in ((seq, reading), (seq + 1, order)):
            wire = sign_message(
                key,
                body,
                market="bench",
                interval=interval,
                agent=agent,
                seq=s,
                expires=interval + (7 * 86_400 if s == seq else STEP),
            ).to_wire()
            ledger.ingest(wire, topic_agent=agent)
    return ledger.close_interval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=2000)
    args = parser.parse_args()
    print(machine_line())
    operator = SigningKey.generate()
    keys = {f"h{i:05d}": SigningKey.generate() for i in range(args.households)}
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        ledger = Ledger(store, market_id="bench", operator_key=operator)
        ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0 - STEP)
        _interval(ledger, keys, 0)
        outcome = _interval(ledger, keys, 1)
        size, first = outcome.checkpoint.tree_size, outcome.first_index

        start = time.perf_counter()
        audit = audit_messages(
            store,
            outcome.checkpoint,
            origin=ledger.origin,
            first=first,
            entries=outcome.entries,
            households=ledger.households,
        )
        fast_s = time.perf_counter() - start
        indices = [i for ix in household_entries(first, outcome.entries).values() for i in ix]

        start = time.perf_counter()
        for index in indices:
            inclusion_proof_from_source(store, index, size)
        naive_s = time.perf_counter() - start

        def wire(body: ReceiptBody | CheckpointNoteBody) -> int:
            message = sign_message(
                operator, body, market="bench", interval=0, agent="operator", seq=1, expires=0
            )
            return len(message.to_wire())

        sizes = [wire(p) for parts in audit.receipts.values() for p in parts]
        h0 = next(iter(audit.receipts))
        auditor = Auditor(
            h0, origin=ledger.origin, key=operator.verifying, store=MemoryCheckpointStore()
        )
        auditor.on_checkpoint(audit.checkpoint, current=True)
        start = time.perf_counter()
        for part in audit.receipts[h0]:
            assert auditor.on_receipt(outcome.interval, part) == []
        check_ms = (time.perf_counter() - start) * 1000
        assert auditor.entries_checked == len(household_entries(first, outcome.entries)[h0])
        store.close()
    print(
        f"households {args.households}, log size {size}, interval entries "
        f"{len(outcome.entries)}, proofs {len(indices)}"
    )
    print(f"audit_messages (checkpoint + all receipts): {fast_s * 1000:.0f} ms")
    print(f"baseline (one store query per proof):      {naive_s * 1000:.0f} ms")
    checkpoint_bytes = wire(audit.checkpoint)
    print(
        f"receipt size: median {statistics.median(sizes):.0f} B, max {max(sizes)} B; "
        f"checkpoint {checkpoint_bytes} B (signed envelopes)"
    )
    print(f"one household's check of its receipt: {check_ms:.2f} ms")


if __name__ == "__main__":
    main()
