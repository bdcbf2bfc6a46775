"""SIGKILL the ledger at random points of many intervals; it must resume exactly.

After every kill and restart: no partial interval (each closed interval has its full
set of readings, orders and exactly one clearing), no double settlement, ``ledger
verify`` passes, and the final root equals that of a run that never crashed.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

import pytest

from tests import crashkit
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

ROOT = Path(__file__).resolve().parents[1]
INTERVALS = 24
KILLS = 20
LINE_TIMEOUT_S = 60.0


def _pump(stream: TextIO, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")  # end of output


def _check_consistent(db_url: str) -> int:
    """Verify the log and its interval structure; return the number of closed intervals."""
    store = LedgerStore(db_url)
    try:
        report = verify_ledger(store, crashkit.operator_key().verifying)
        assert report.ok, f"entry {report.first_bad_entry}: {report.problem}"
        kinds: Counter[tuple[int, str]] = Counter()
        settled: Counter[tuple[str, int]] = Counter()
        for entry in store.iter_entries():
            kinds[(entry.interval, entry.kind)] += 1
            if entry.kind == EntryKind.SETTLEMENT:
                obj = json.loads(entry.data)
                settled[(obj["agent"], obj["interval"])] += 1
    finally:
        store.close()
    closed = sorted({i for (i, kind) in kinds if kind == EntryKind.CLEARING})
    households = len(crashkit.HOUSEHOLDS)
    for interval in closed:
        assert kinds[(interval, EntryKind.CLEARING)] == 1, interval
        assert kinds[(interval, EntryKind.READING)] == households, interval
        assert kinds[(interval, EntryKind.ORDER)] == households, interval
    assert all(count == 1 for count in settled.values()), "a household was settled twice"
    assert closed == [crashkit.T0 + i * crashkit.STEP for i in range(len(closed))]
    return len(closed)


def test_ledger_resumes_exactly_after_repeated_sigkills(db_url: str, tmp_path: Path) -> None:
    reference = crashkit.play(f"sqlite:///{tmp_path / 'reference.db'}", INTERVALS, say=False)
    rng = random.Random(2026)
    kills = 0
    closed_before = 0
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.crashkit", db_url, str(INTERVALS)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(server.stdout, lines), daemon=True)
    reader.start()

    seen_lines: list[str] = []

    def next_line() -> str:
        try:  # a stalled ledger process fails the test here, not at the suite's timeout
            line = lines.get(timeout=LINE_TIMEOUT_S).strip()
        except queue.Empty:
            pytest.fail(
                f"no output from the ledger process for {LINE_TIMEOUT_S} s; "
                f"zygote alive: {server.poll() is None}; last lines: {seen_lines[-12:]}"
            )
        seen_lines.append(line)
        return line

    try:
        while True:
            server.stdin.write("run\n")
            server.stdin.flush()
            first = next_line().split()
            assert first[0] == "pid", first
            pid = int(first[1])
            # Kill after a random number of progress lines plus a random few
            # milliseconds, so kills land before, inside and after commits.
            kill_after = rng.randint(1, 20) if kills < KILLS else None
            seen, finished = 0, False
            while (line := next_line()) and not line.startswith("exit"):
                finished = finished or line == "done"
                seen += 1
                if kill_after is not None and seen == kill_after:
                    time.sleep(rng.uniform(0, 0.004))  # chaos timing, not synchronisation
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
            code = int(line.split()[1])
            assert code == (0 if finished else -signal.SIGKILL), (line, finished)
            closed = _check_consistent(db_url)
            assert closed >= closed_before  # nothing committed is ever lost
            closed_before = closed
            if finished:
                break
    finally:
        server.stdin.close()
        if server.wait(timeout=60) is None:
            server.kill()
        reader.join(timeout=60)
        server.stdout.close()
    assert kills >= KILLS
    assert _check_consistent(db_url) == INTERVALS
    store = LedgerStore(db_url)
    try:
        assert verify_ledger(store, crashkit.operator_key().verifying).root == reference
    finally:
        store.close()


@pytest.mark.parametrize("index", [0, 5])
def test_the_driver_repeats_its_messages_byte_for_byte(index: int) -> None:
    assert crashkit.interval_messages(index) == crashkit.interval_messages(index)
    agents = [agent for agent, _ in crashkit.interval_messages(index)]
    assert agents == [a for a in crashkit.HOUSEHOLDS for _ in (0, 1)]
