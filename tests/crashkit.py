"""A deterministic market for crash tests: the same signed messages on every run.

Keys come from the seed (``wattmesh.sim.simkeys``) and ECDSA nonces from RFC 6979, so the
driver produces byte-identical messages each time it starts, as households redelivering
their outbox after a ledger restart would.

Run as a script it is a small fork server: it imports everything once, then for each
``run`` line on stdin forks a ledger process that plays the market into the database
(resuming after the last closed interval) and prints ``pid N``, a line at each step so
a test can kill it at chosen points, and ``done``; the server then prints ``exit CODE``.
Forking keeps a restart cheap (no second import of SQLAlchemy), so a test can afford
dozens of kills::

    python -m tests.crashkit DB_URL INTERVALS
"""

from __future__ import annotations

import faulthandler
import os
import random
import sys
import traceback

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, ReadingBody, Side, sign_message
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore
from wattmesh.sim.simkeys import simulation_key

MARKET = "crash"
T0 = 1_750_000_500 - 1_750_000_500 % 900
STEP = 900
SEED = 7
HOUSEHOLDS = tuple(f"h{i:03d}" for i in range(1, 7))
STALL_S = 45.0
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


def emit(line: str) -> None:
    """One progress line in one write(2): a kill can never leave half a line behind.

    (``print`` writes the text and the newline separately; a SIGKILL between the two
    would glue the server's next line onto this one.)
    """
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def operator_key() -> SigningKey:
    return simulation_key(SEED, "operator")


def household_keys() -> dict[str, SigningKey]:
    return {agent: simulation_key(SEED, agent) for agent in HOUSEHOLDS}


def interval_messages(index: int) -> list[tuple[str, bytes]]:
    """Each household's reading and order for interval ``index`` (seq 2i+1 and 2i+2)."""
    interval = T0 + index * STEP
    messages = []
    for n, (agent, key) in enumerate(household_keys().items()):
        rng = random.Random(f"{SEED}/{agent}")
        import_wh = export_wh = pv_wh = 0
        for _ in range(index):  # registers at the start of the interval: sum of the past
            net_wh = rng.randint(-400, 400)
            import_wh, export_wh = import_wh + max(net_wh, 0), export_wh + max(-net_wh, 0)
            pv_wh += max(-net_wh, 0)
        reading = ReadingBody(interval, import_wh, export_wh, pv_wh, 0)
        side = Side.SELL if (n + index) % 2 else Side.BUY
        order = OrderBody(side, 100 + (37 * n + 11 * index) % 300, 90_000 + 20_000 * n)
        for seq, body in ((2 * index + 1, reading), (2 * index + 2, order)):
            signed = sign_message(
                key,
                body,
                market=MARKET,
                interval=interval,
                agent=agent,
                seq=seq,
                expires=interval + STEP,
            )
            messages.append((agent, signed.to_wire()))
    return messages


def play(db_url: str, intervals: int, *, say: bool) -> bytes:
    """Play (or resume) the market into ``db_url``; return the final root."""
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator_key())
    try:
        ledger.register({a: k.verifying for a, k in household_keys().items()}, interval=T0)
        last = ledger.last_closed_interval
        start = 0 if last is None else (last - T0) // STEP + 1
        for index in range(start, intervals):
            ledger.open_interval(T0 + index * STEP, TARIFF)
            for agent, wire in interval_messages(index):
                ledger.ingest(wire, topic_agent=agent)
                if say:
                    emit(f"ingested {index}")
            ledger.close_interval()
            if say:
                emit(f"closed {index}")
        return ledger.root
    finally:
        ledger.store.close()


def serve(db_url: str, intervals: int) -> None:
    """Fork one ledger process per ``run`` line on stdin; report how each ended."""
    for line in sys.stdin:
        if line.strip() != "run":
            return
        pid = os.fork()
        if pid == 0:  # the ledger process
            code = 0
            # A stalled ledger process shows where it stalls (stderr) and ends.
            faulthandler.dump_traceback_later(STALL_S, exit=True)
            try:
                emit(f"pid {os.getpid()}")
                play(db_url, intervals, say=True)
                emit("done")
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        emit(f"exit {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
