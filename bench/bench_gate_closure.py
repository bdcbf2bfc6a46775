"""Gate closure: N signed orders verified, cleared, logged and checkpointed.

Prints, for each N, the median wall time of the whole pipeline (ingest = parse + verify
each order, then close = clear, build log entries, one SQLite transaction, signed
checkpoint), its stages, and orders per second. Beside it, in the same run, the floor
that no pipeline can beat on one core: bare ECDSA P-256 verification of the same N
signatures with `cryptography`, and the naive store baseline (one transaction per
entry) for the logging step.

    python bench/bench_gate_closure.py [--sizes 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _machine import machine_line

from broker.keys import SigningKey
from broker.messages import OrderBody, Side, decode_message, sign_message
from ledger.clearing import GridTariff
from ledger.entries import NewEntry
from ledger.ledger import Ledger
from ledger.store import Checkpoint, LedgerStore

MARKET = "bench"
T0 = 1_750_000_500 - 1_750_000_500 % 900
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def _orders(keys: dict[str, SigningKey], rng: random.Random) -> list[tuple[str, bytes]]:
    wires = []
    for agent, key in keys.items():
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        body = OrderBody(side, rng.randint(50, 2_000), rng.randint(80_000, 300_000))
        message = sign_message(
            key, body, market=MARKET, interval=T0, agent=agent, seq=1, expires=T0 + 900
        )
        wires.append((agent, message.to_wire()))
    return wires


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_once(
    n: int, keys: dict[str, SigningKey], wires: list[tuple[str, bytes]]
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        ledger = Ledger(store, market_id=MARKET, operator_key=SigningKey.generate())
        ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0)
        ledger.open_interval(T0, TARIFF)

        def ingest() -> None:
            for agent, wire in wires:
                ledger.ingest(wire, topic_agent=agent)

        t_ingest = _timed(ingest)
        start = time.perf_counter()
        outcome = ledger.close_interval()
        t_close = time.perf_counter() - start
        assert outcome.orders == n, outcome.orders
        store.close()
    return {"ingest": t_ingest, "close": t_close, "total": t_ingest + t_close}


def verify_floor(keys: dict[str, SigningKey], wires: list[tuple[str, bytes]]) -> float:
    """Bare signature checks of the same messages, already parsed."""
    parsed = [(keys[a].verifying, decode_message(w)) for a, w in wires]
    start = time.perf_counter()
    for key, message in parsed:
        assert key.verify(message.signature, message.signed_bytes)
    return time.perf_counter() - start


def naive_store(entries: int) -> tuple[float, float]:
    """The same number of log rows written as one transaction vs one per row."""
    data = [NewEntry("order", T0, f"h{i:06d}", 1, b'{"kind":"order"}' * 8) for i in range(entries)]
    times = []
    for per_row in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = LedgerStore(f"sqlite:///{Path(tmp) / 'ledger.db'}")
            key = SigningKey.generate()
            start = time.perf_counter()
            if per_row:
                for i, e in enumerate(data):
                    store.append(
                        i, [e], Checkpoint(i + 1, T0, b"\0" * 32, key.kid, b"sig"), nodes=()
                    )
            else:
                store.append(
                    0, data, Checkpoint(entries, T0, b"\0" * 32, key.kid, b"sig"), nodes=()
                )
            times.append(time.perf_counter() - start)
            store.close()
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    for n in args.sizes:
        rng = random.Random(n)
        keys = {f"h{i:06d}": SigningKey.generate() for i in range(n)}
        wires = _orders(keys, rng)
        runs = [run_once(n, keys, wires) for _ in range(args.repeat)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        floor = statistics.median(verify_floor(keys, wires) for _ in range(args.repeat))
        print(
            f"N={n:>7,}: gate closure median {med['total']:.3f} s "
            f"(ingest {med['ingest']:.3f} s, close {med['close']:.3f} s) "
            f"= {n / med['total']:,.0f} orders/s; "
            f"bare verify floor {floor:.3f} s = {n / floor:,.0f} verifications/s; "
            f"pipeline / floor = {med['total'] / floor:.2f}"
        )
    batch, per_row = naive_store(1_000)
    print(
        f"store, 1,000 log rows: one transaction {batch * 1000:.1f} ms, "
        f"one transaction per row (naive) {per_row * 1000:.1f} ms "
        f"({per_row / batch:.0f}x slower)"
    )


if __name__ == "__main__":
    main()
