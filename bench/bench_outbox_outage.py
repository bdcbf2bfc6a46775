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
from broker.transport import Session  # noqa: E402
from tests import outagekit  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--kills", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(machine_line())
    asyncio.run(_main(args.seconds, args.kills))


if __name__ == "__main__":
    main()
