"""Gate closure: N signed orders verified, cleared, logged and checkpointed.

"From gate closure to signed checkpoint" is measured two ways, on SQLite and on
PostgreSQL:

* on arrival (production): each order is parsed and verified by ``Ledger.ingest`` as it
  arrives, during the interval, one core; gate closure is then ``close_interval``:
  clearing, log entries, tree nodes, one transaction, signed checkpoint. Ingest is
  timed too, beside it.
* all at closure: all N orders arrive at gate closure and are verified then, by
  ``Ledger.ingest_many`` with the signatures checked on a pool of worker processes
  (``ledger.sigcheck.PoolVerifier``, both cores; started before the clock), then closed.

Baselines in the same run: bare ``cryptography`` P-256 verification of the same
signatures on one core (already parsed: no one-core pipeline that verifies at closure
can beat it), and the naive store (one transaction per log row). Wall and CPU time of
this process (the workers' CPU is not in it), median of ``--repeat`` runs.

    python bench/bench_gate_closure.py [--sizes 1000 10000] [--repeat 3] [--db sqlite postgres]
    python bench/bench_gate_closure.py --sizes 100000 --repeat 1

PostgreSQL is a private pgserver unless WATTMESH_TEST_PG_URL names a server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _machine import machine_line
from _pg import pg_database, pg_server

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, Side, decode_message, sign_message
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.sigcheck import PoolVerifier
from wattmesh.ledger.store import Checkpoint, LedgerStore

MARKET = "bench"
T0 = 1_750_000_500 - 1_750_000_500 % 900
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def _orders(keys: dict[str, SigningKey], rng: random.Random) -> list[tuple[bytes, str | None]]:
    wires: list[tuple[bytes, str | None]] = []
    for agent, key in keys.items():
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        body = OrderBody(side, rng.randint(50, 2_000), rng.randint(80_000, 300_000))
        message = sign_message(
            key, body, market=MARKET, interval=T0, agent=agent, seq=1, expires=T0 + 900
        )
        wires.append((message.to_wire(), agent))
    return wires


class Clock:
    """Wall and CPU seconds of this process since creation."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


@contextlib.contextmanager
def _databases(kind: str, server: str | None) -> Iterator[str]:
    if kind == "postgres":
        assert server is not None
        with pg_database(server) as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'ledger.db'}"


def _ledger(url: str, keys: dict[str, SigningKey]) -> Ledger:
    ledger = Ledger(LedgerStore(url), market_id=MARKET, operator_key=SigningKey.generate())
    ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0)
    ledger.open_interval(T0, TARIFF)
    return ledger


def on_arrival(
    url: str, keys: dict[str, SigningKey], wires: list[tuple[bytes, str | None]]
) -> dict[str, float]:
    ledger = _ledger(url, keys)
    clock = Clock()
    for wire, agent in wires:
        ledger.ingest(wire, topic_agent=agent)
    ingest_wall, _cpu = clock.read()
    clock = Clock()
    outcome = ledger.close_interval()
    close_wall, close_cpu = clock.read()
    assert outcome.orders == len(wires), outcome.orders
    ledger.store.close()
    return {"ingest": ingest_wall, "close": close_wall, "close_cpu": close_cpu}


def at_closure(
    url: str,
    keys: dict[str, SigningKey],
    wires: list[tuple[bytes, str | None]],
    pool: PoolVerifier,
) -> dict[str, float]:
    ledger = _ledger(url, keys)
    clock = Clock()
    results = ledger.ingest_many(wires, pool)
    verify_wall, _cpu = clock.read()
    outcome = ledger.close_interval()
    total_wall, total_cpu = clock.read()
    assert outcome.orders == len(wires) == len(results), outcome.orders
    ledger.store.close()
    return {"verify": verify_wall, "total": total_wall, "total_cpu": total_cpu}


def verify_floor(keys: dict[str, SigningKey], wires: list[tuple[bytes, str | None]]) -> float:
    """Bare signature checks of the same messages, already parsed, one core."""
    parsed = [(keys[str(a)].verifying, decode_message(w)) for w, a in wires]
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


def _load(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f}"


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(machine_line())
    print(_load("before"))
    pool = PoolVerifier(args.workers)
    pool.warm_up()
    with contextlib.ExitStack() as stack:
        server = None
        if "postgres" in args.db:
            server, what = stack.enter_context(pg_server())
            print(f"postgres: {what}")
        for n in args.sizes:
            rng = random.Random(n)
            keys = {f"h{i:06d}": SigningKey.generate() for i in range(n)}
            wires = _orders(keys, rng)
            floor = statistics.median(verify_floor(keys, wires) for _ in range(args.repeat))
            print(f"N={n:,}: bare verify floor, one core {floor:.3f} s ({n / floor:,.0f}/s)")
            for kind in args.db:
                arrival, closure = [], []
                for _ in range(args.repeat):
                    with _databases(kind, server) as url:
                        arrival.append(on_arrival(url, keys, wires))
                    with _databases(kind, server) as url:
                        closure.append(at_closure(url, keys, wires, pool))
                ingest, close = _median(arrival, "ingest"), _median(arrival, "close")
                print(
                    f"  {kind:8} on arrival: gate closure (close) {close:.3f} s "
                    f"(CPU {_median(arrival, 'close_cpu'):.3f} s); ingest during the interval "
                    f"{ingest:.3f} s = {n / ingest:,.0f}/s"
                )
                print(
                    f"  {kind:8} all at closure, {args.workers} workers: gate closure "
                    f"{_median(closure, 'total'):.3f} s (verify {_median(closure, 'verify'):.3f} "
                    f"s, main-process CPU {_median(closure, 'total_cpu'):.3f} s); "
                    f"vs one-core ingest + close {ingest + close:.3f} s"
                )
    pool.close()
    batch, per_row = naive_store(1_000)
    print(
        f"store, 1,000 log rows: one transaction {batch * 1000:.1f} ms, "
        f"one transaction per row (naive) {per_row * 1000:.1f} ms "
        f"({per_row / batch:.0f}x slower)"
    )
    print(_load("after"))


if __name__ == "__main__":
    main()
