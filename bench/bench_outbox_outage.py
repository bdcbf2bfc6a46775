"""The full outage run: 10 readings/s for a minute while Mosquitto is SIGKILLed 6 times.

The test suite runs the same scenario for 15 s with 3 kills
(tests/test_agent_outbox.py); this is the minute-long version from issue 5. The
receiver (a persistent-session subscriber standing in for the ledger's ingest; see
tests/outagekit.py) must get seq 1..600 exactly in order as first copies; every
further copy is a redelivery and is counted. Baseline in the same run: the same
publisher with a clean-session receiver on a broker without persistence, which
loses what is published while the receiver reconnects.

    .venv/bin/python bench/bench_outbox_outage.py [--seconds 60] [--kills 6]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import machine_line  # noqa: E402
from tests import outagekit  # noqa: E402
from wattmesh.broker.transport import Session  # noqa: E402


def _line(name: str, report: outagekit.OutageReport) -> str:
    expected = [("h001", seq) for seq in range(1, report.readings + 1)]
    exact = report.firsts == expected
    return (
        f"{name:<34} received {len(report.firsts):>4}/{report.readings}  "
        f"in order and complete: {'yes' if exact else 'NO'}  "
        f"redeliveries {report.redeliveries:>3}  reconnects {report.reconnects}  "
        f"backlog at restarts {report.backlog_at_restart}  dropped {report.dropped}  "
        f"commits {report.commits}  drain {report.drain_s:.2f} s"
    )


async def _main(seconds: int, kills: int) -> None:
    readings = seconds * 10
    with tempfile.TemporaryDirectory() as tmp:
        report = await outagekit.run_outage(Path(tmp), readings=readings, kills=kills)
    print(_line("outbox + persistent receiver", report))
    with tempfile.TemporaryDirectory() as tmp:
        baseline = await outagekit.run_outage(
            Path(tmp), readings=readings, kills=kills, receiver_session=Session.CLEAN
        )
    print(_line("outbox + clean-session receiver", baseline))


async def _backfill(count: int) -> None:
    """Send a stored backlog of ``count`` readings; baseline: bare sequential publishes."""
    import time

    from wattmesh.agents._outbox import Outbox
    from wattmesh.agents._publisher import DEFAULT_MAX_IN_FLIGHT, DurablePublisher
    from wattmesh.broker.mosquitto import private_mosquitto
    from wattmesh.broker.topics import Topics
    from wattmesh.broker.transport import Transport, TransportConfig

    topics = Topics("bench")
    payload = b"x" * 520
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db")
        for _ in range(count):
            outbox.add(topics.reading("h001"), lambda _seq: payload)
        outbox.commit()
        async with private_mosquitto(Path(tmp) / "mosquitto") as address:
            config = TransportConfig(
                address=address, client_id="bench-agent", max_inflight=DEFAULT_MAX_IN_FLIGHT
            )
            async with Transport(config) as transport:
                await transport.wait_connected()
                start = time.perf_counter()
                for _ in range(count):
                    await transport.publish(topics.reading("h001"), payload, qos=1)
                bare_s = time.perf_counter() - start
                start = time.perf_counter()
                async with DurablePublisher(outbox, transport) as publisher:
                    assert await publisher.flush(600)
                outbox_s = time.perf_counter() - start
        outbox.close()
    print(
        f"backfill of {count:,} stored readings over loopback: {outbox_s:.2f} s "
        f"({count / outbox_s:,.0f}/s); bare QoS 1 publishes one at a time: {bare_s:.2f} s "
        f"({count / bare_s:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--kills", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(machine_line())
    asyncio.run(_backfill(5000))
    asyncio.run(_main(args.seconds, args.kills))


if __name__ == "__main__":
    main()
