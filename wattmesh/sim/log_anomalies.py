"""The simulation's forecaster's anomaly checks: the detectors over the ledger's log.

At the end of each simulated day :class:`LogAnomalies` reads the log entries appended
since the last look (readings and settlements: what the ledger has logged, nothing
else) and runs the detectors of :mod:`forecasting.anomaly` over every household's
logged history: night export over the readings' registers (night: slots of the day
without PV on most logged days), short delivery over the settlements (metered export
against P2P energy sold). Each episode is returned once; the forecaster signs and
publishes it and the ledger logs it as an ``anomaly`` entry.
"""

from __future__ import annotations

import json

from wattmesh.broker.messages import ReadingBody, decode_message
from wattmesh.forecasting.anomaly import AnomalyFlag, night_export_flags, short_delivery
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.store import LedgerStore

__all__ = ["LogAnomalies"]


class LogAnomalies:
    """Reads the log incrementally and returns each episode the detectors find once."""

    def __init__(self, store: LedgerStore, *, interval_s: int) -> None:
        self.store = store
        self.interval_s = interval_s
        self._position = 0
        self._readings: dict[str, dict[int, ReadingBody]] = {}
        self._settled: dict[str, dict[int, tuple[int, int]]] = {}  # export, sold
        self._seen: set[tuple[str, str, int]] = set()

    def _read(self) -> None:
        for entry in self.store.iter_entries(start=self._position):
            self._position = entry.idx + 1
            if entry.agent is None:
                continue
            if entry.kind == EntryKind.READING:
                obj = json.loads(entry.data)
                wire = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
                message = decode_message(wire)
                body = message.body_as(ReadingBody)
                self._readings.setdefault(entry.agent, {})[message.header.interval] = body
            elif entry.kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION):
                obj = json.loads(entry.data)
                pair = (int(obj["export_wh"]), int(obj["sold_wh"]))
                self._settled.setdefault(entry.agent, {})[entry.interval] = pair

    def _short(self, agent: str) -> list[AnomalyFlag]:
        settled = self._settled.get(agent, {})
        if not settled:
            return []
        season = 86_400 // self.interval_s
        first = min(settled)
        start = first - (first // self.interval_s % season) * self.interval_s  # midnight
        count = (max(settled) - start) // self.interval_s + 1
        export, sold = [0] * count, [0] * count
        for at, (out, s) in settled.items():
            k = (at - start) // self.interval_s
            export[k], sold[k] = out, s
        return short_delivery(
            agent, start_s=start, interval_s=self.interval_s, export_wh=export, sold_wh=sold
        )

    def new_flags(self) -> list[AnomalyFlag]:
        """Episodes found in the log so far that were not returned before."""
        self._read()
        found: list[AnomalyFlag] = []
        for agent in sorted(set(self._readings) | set(self._settled)):
            flags = night_export_flags(
                agent, self._readings.get(agent, {}), interval_s=self.interval_s
            )
            for flag in [*flags, *self._short(agent)]:
                key = (flag.agent, flag.kind, flag.interval)
                if key not in self._seen:
                    self._seen.add(key)
                    found.append(flag)
        return found
