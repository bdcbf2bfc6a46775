"""SD-card wear of the agent's outbox: bytes written (and fsyncs) per hour.

Simulates an agent taking one reading per second, each published and acknowledged
before the next (the steady state on a healthy link), in compressed time: the
operations per simulated second run back to back. The outbox (agents/_outbox.py:
WAL, synchronous=FULL, 1 KiB pages) does what DurablePublisher does with its 1 s
commit interval: per second one commit holding the new reading, the counter and the
deletion of the previous, acknowledged reading. The naive baseline is the obvious
code: SQLite defaults (rollback journal, synchronous=FULL, 4 KiB pages), one commit
to store each message with its number and one more to delete it on the PUBACK.
``outbox+ring`` also keeps a reading in the readings ring (agents/_selfcast.py) with
every commit: the worst case of the agent's own-forecast history.

Each variant runs in a child process that reports its /proc/self/io deltas:
``write_bytes`` (bytes the process caused to be sent to the block device: what
wears the card), ``wchar`` (bytes handed to write(2)); fsync/fdatasync calls are
counted with ``strace -c`` when available. Figures are scaled to one hour from the
simulated span (``--seconds``, default 1200 simulated seconds: x3).

    .venv/bin/python bench/bench_outbox_wear.py [--seconds 1200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import machine_line  # noqa: E402
from wattmesh.agents._outbox import Outbox  # noqa: E402
from wattmesh.agents._selfcast import Registers  # noqa: E402

# A signed reading on the wire is about 520 bytes; the topic about 40.
PAYLOAD = b"x" * 520
TOPIC = "wattmesh/m1/household/h001/reading"
RING_INTERVAL_S = 900


class NaiveOutbox:
    """The obvious way: SQLite defaults, one transaction per insert and per delete."""

    def __init__(self, path: Path, page_size: int = 4096) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(f"PRAGMA page_size = {page_size}")
        self.db.execute("CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY, seq INTEGER)")
        self.db.execute("INSERT OR IGNORE INTO state VALUES (1, 0)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB)"
        )
        self.db.commit()
        self.seq = 0

    def add(self) -> int:
        self.seq += 1
        self.db.execute("UPDATE state SET seq = ? WHERE id = 1", (self.seq,))
        self.db.execute("INSERT INTO outbox VALUES (?, ?, ?)", (self.seq, TOPIC, PAYLOAD))
        self.db.commit()
        return self.seq

    def ack(self, seq: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self.db.commit()


def _io() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value)
    return fields


def _run_naive(path: Path, seconds: int, per_second: int) -> int:
    box = NaiveOutbox(path)
    commits = 0
    for _ in range(seconds):
        for _ in range(per_second):
            seq = box.add()
            box.ack(seq)
            commits += 2
    return commits


def _run_outbox(path: Path, seconds: int, per_second: int) -> int:
    box = Outbox(path)
    previous: list[int] = []
    for _ in range(seconds):
        # One commit per second: this second's readings and the deletions of the
        # previous second's, which the broker has acknowledged meanwhile.
        for seq in previous:
            box.ack(seq)
        previous = [box.add(TOPIC, lambda _seq: PAYLOAD) for _ in range(per_second)]
        box.commit()
    for seq in previous:
        box.ack(seq)
    box.commit()
    commits = box.commits
    box.close()
    return commits


def _run_outbox_ring(path: Path, seconds: int, per_second: int) -> int:
    """As ``outbox``, and every commit also keeps a reading in the readings ring (the
    agent's own forecast, agents/_selfcast.py) of 15-minute intervals: each simulated
    second is one interval, so the ring (673 slots) wraps and slots are overwritten as
    in the steady state. The agent keeps one reading per market interval; this is the
    worst case of one with every commit."""
    box = Outbox(path)
    previous: list[int] = []
    for k in range(seconds):
        for seq in previous:
            box.ack(seq)
        previous = [box.add(TOPIC, lambda _seq: PAYLOAD) for _ in range(per_second)]
        reading = Registers(k * RING_INTERVAL_S, 10**7 + k * 120, 5 * 10**6)
        box.keep_reading(reading, RING_INTERVAL_S)
        box.commit()
    for seq in previous:
        box.ack(seq)
    box.commit()
    commits = box.commits
    box.close()
    return commits


VARIANTS: dict[str, Callable[[Path, int, int], int]] = {
    "naive": _run_naive,
    "outbox": _run_outbox,
    "outbox+ring": _run_outbox_ring,
}


def child(variant: str, seconds: int, per_second: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="outbox-wear-", dir=REPO / "out"))
    try:
        before = _io()
        commits = VARIANTS[variant](workdir / "outbox.db", seconds, per_second)
        after = _io()
        sizes = sum(p.stat().st_size for p in workdir.iterdir())
    finally:
        shutil.rmtree(workdir)
    print(
        json.dumps(
            {
                "write_bytes": after["write_bytes"] - before["write_bytes"],
                "wchar": after["wchar"] - before["wchar"],
                "commits": commits,
                "file_bytes": sizes,
            }
        )
    )


def measure(variant: str, seconds: int, per_second: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", variant, str(seconds), str(per_second)]
    strace = shutil.which("strace")
    with tempfile.NamedTemporaryFile(mode="r", suffix=".strace") as trace:
        if strace:
            cmd = [strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", trace.name, *cmd]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        result["fsyncs"] = _fsyncs(Path(trace.name).read_text()) if strace else float("nan")
    return result


def _fsyncs(summary: str) -> float:
    calls = 0
    for line in summary.splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            calls += int(parts[3])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=1200, help="simulated seconds")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SECONDS", "PER_SECOND"))
    args = parser.parse_args()
    if args.child:
        variant, seconds, per_second = args.child
        child(variant, int(seconds), int(per_second))
        return
    (REPO / "out").mkdir(exist_ok=True)
    print(machine_line())
    print(f"simulated {args.seconds} s, scaled x{3600 / args.seconds:g} to one hour")
    print(
        f"{'variant':<24}{'write_bytes/h':>16}{'wchar/h':>14}{'fsyncs/h':>10}"
        f"{'commits/h':>11}{'bytes/reading':>15}"
    )
    rows = [("naive", 1), ("outbox", 1), ("outbox+ring", 1), ("naive", 10), ("outbox", 10)]
    for variant, per_second in rows:
        r = measure(variant, args.seconds, per_second)
        scale = 3600 / args.seconds
        readings = args.seconds * per_second
        label = f"{variant}, {per_second}/s"
        print(
            f"{label:<24}{r['write_bytes'] * scale / 1e6:>13.1f} MB"
            f"{r['wchar'] * scale / 1e6:>11.1f} MB{r['fsyncs'] * scale:>10.0f}"
            f"{r['commits'] * scale:>11.0f}{r['write_bytes'] / readings:>15.0f}"
        )


if __name__ == "__main__":
    main()
