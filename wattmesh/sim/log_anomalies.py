"""The simulation's forecaster's anomaly checks: the detectors over the ledger's log.

At the end of each simulated day :class:`LogAnomalies` reads the log entries appended
since the last look (readings and settlements: what the ledger has logged, nothing
else) and runs the detectors of :mod:`forecasting.anomaly` over every household's
logged history: night export over the readings' registers (night: slots of the day
without PV on most logged days), short delivery over the settlements (metered export
against P2P energy sold), and, with the forecaster's band, sustained deviation of the
day's logged demand from the forecast the forecaster made for it. Each episode is
returned once; the forecaster signs and publishes it and the ledger logs it as an
``anomaly`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from wattmesh.broker.messages import ReadingBody, decode_message
from wattmesh.forecasting.anomaly import (
    AnomalyFlag,
    forecast_deviation,
    night_export_flags,
    short_delivery_flags,
)
from wattmesh.forecasting.history import series_from_readings
from wattmesh.forecasting.service import ForecastService
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.service import LedgerService
from wattmesh.ledger.store import LedgerStore

__all__ = ["LogAnomalies", "publish_flags"]


Band = Callable[[str, int, int], tuple[Sequence[int], Sequence[int]] | None]
"""The forecaster's demand p10 and p90 for (household, start, intervals), if it has them."""


class LogAnomalies:
    """Reads the log incrementally and returns each episode the detectors find once."""

    def __init__(self, store: LedgerStore, *, interval_s: int, band: Band | None = None) -> None:
        self.store = store
        self.interval_s = interval_s
        self.band = band
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
        return short_delivery_flags(agent, settled, interval_s=self.interval_s)

    def _deviation(self, agent: str, since: int) -> list[AnomalyFlag]:
        """Logged demand from ``since`` on against the forecaster's band for it."""
        if self.band is None:
            return []
        readings = self._readings.get(agent, {})
        rows = [(False, readings[at]) for at in sorted(readings) if at >= since]
        start, demand, _pv = series_from_readings(rows, self.interval_s)
        band = self.band(agent, start, len(demand)) if demand else None
        if band is None:
            return []
        p10, p90 = band
        return forecast_deviation(
            agent, start_s=start, interval_s=self.interval_s, actual_wh=demand,
            p10_wh=p10, p90_wh=p90,
        )  # fmt: skip

    def new_flags(self, *, day_start: int | None = None) -> list[AnomalyFlag]:
        """Episodes found in the log so far that were not returned before; with
        ``day_start``, also the demand since then against the forecaster's band."""
        self._read()
        found: list[AnomalyFlag] = []
        for agent in sorted(set(self._readings) | set(self._settled)):
            flags = night_export_flags(
                agent, self._readings.get(agent, {}), interval_s=self.interval_s
            )
            if day_start is not None:
                flags += self._deviation(agent, day_start)
            for flag in [*flags, *self._short(agent)]:
                key = (flag.agent, flag.kind, flag.interval)
                if key not in self._seen:
                    self._seen.add(key)
                    found.append(flag)
        return found


async def publish_flags(
    service: LedgerService, forecaster: ForecastService, flags: list[AnomalyFlag], timeout_s: float
) -> None:
    """Each of the day's new flags signed and published by the forecaster (its episode
    then not learnt from), and taken by the ledger before the run goes on (so the log
    does not depend on timing)."""
    if not flags:
        return
    target = service.anomalies_taken + len(flags)
    for flag in flags:
        await forecaster.publish_anomaly(flag)
        if flag.kind != "short_delivery":  # an interval-level episode: not learnt from
            forecaster.forget(flag)
    await service.wait_until(lambda: service.anomalies_taken >= target, timeout_s)
