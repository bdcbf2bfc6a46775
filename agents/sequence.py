"""Per-agent sequence numbers, strictly increasing across restarts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = ["MemorySequence"]


class SeqSource(Protocol):
    """Where a sender takes its next sequence number (strictly increasing)."""

    def next(self) -> int: ...


class MemorySequence:
    """A counter that lives as long as the process (simulations, tests)."""

    def __init__(self, last: int = 0) -> None:
        self._last = last

    def next(self) -> int:
        self._last += 1
        return self._last


class FileSequence:
    """A counter kept in a small file, written atomically before each number is used.

    The real agent now keeps its counter in the outbox (:mod:`agents._outbox`), which
    continues above this file's number when it finds one (``agents.lifecycle``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._last = int(path.read_text(encoding="ascii").strip() or "0")
        except FileNotFoundError:
            self._last = 0

    def next(self) -> int:
        value = self._last + 1
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self._last = value
        return value
