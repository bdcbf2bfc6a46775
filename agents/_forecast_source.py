"""Which forecast an agent's order uses, and its own forecast's readings.

:class:`ForecastSource` keeps the agent's readings of the last 7 days
(:class:`agents._selfcast.ReadingRing`, loaded from and written through the outbox's
readings table, :meth:`agents._outbox.Outbox.keep_reading`, when the agent has one)
and chooses the figures of each order (:meth:`ForecastSource.fresh`,
:meth:`ForecastSource.fallback`): the forecasting service's fresh forecast when it
came in time; else an older one of its that covers the interval; else the agent's own
(:func:`agents._selfcast.self_forecast`); else none, a no-trade order. What each order
used is :attr:`ForecastSource.used` (the diagnostics' ``forecast_used``); a change is
logged once, not every interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from wattmesh.agents._ordering import covers
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._selfcast import ReadingRing, Registers
from wattmesh.agents.meter import MeterReading
from wattmesh.broker.messages import ForecastBody

_LOG = logging.getLogger(__name__)

FORECASTER: Final = "forecaster"
NONE: Final = "none"


@dataclass(frozen=True)
class Choice:
    """The figures an order uses (Wh) and what they came from (``label``)."""

    demand_wh: int
    pv_wh: int
    label: str  # "forecaster", "own seasonal (N days of history)", "persistence", "none"
    detail: str = ""  # how, for the log


class ForecastSource:
    """The agent's choice of forecast per order and its own forecast's history."""

    def __init__(self, agent_id: str, outbox: Outbox | None, *, has_forecaster: bool) -> None:
        self._agent_id = agent_id
        self._outbox = outbox
        self._has_forecaster = has_forecaster
        self.ring = ReadingRing(outbox.kept_readings() if outbox is not None else ())
        self.used: str | None = None  # the last order's; None before the first

    def note_reading(self, interval: int, reading: MeterReading, interval_s: int | None) -> None:
        """Keep the reading taken for ``interval``; on disk too, given the market's
        ``interval_s`` and an outbox (written by its next commit)."""
        registers = Registers(
            interval,
            reading.import_wh,
            reading.export_wh,
            reading.pv_wh,
            reading.battery_in_wh or 0,
            reading.battery_out_wh or 0,
        )
        if self.ring.add(registers) and self._outbox is not None and interval_s is not None:
            self._outbox.keep_reading(registers, interval_s)

    def fresh(self, forecast: ForecastBody) -> Choice:
        """The service's forecast issued for this interval (its first step)."""
        return Choice(forecast.demand_wh[0], forecast.pv_wh[0], FORECASTER)

    def fallback(self, older: ForecastBody | None, interval: int, interval_s: int) -> Choice:
        """Without a fresh forecast: ``older``'s step for ``interval`` if it covers it,
        else the agent's own forecast, else none (a no-trade order)."""
        if older is not None and covers(older, interval):
            step = (interval - older.start) // older.interval_s
            return Choice(older.demand_wh[step], older.pv_wh[step], FORECASTER, "an older one")
        own = self.ring.forecast(interval, interval_s)
        if own is None:
            return Choice(0, 0, NONE, "no readings to go on yet")
        return Choice(own.demand_wh, own.pv_wh, own.label, own.method.value)

    def use(self, choice: Choice) -> bool:
        """Record that an order used ``choice``; True (and one log line) if what the
        orders use changed."""
        if choice.label == self.used:
            return False
        was, self.used = self.used, choice.label
        how = f" ({choice.detail})" if choice.detail else ""
        level = logging.INFO
        if self._has_forecaster and choice.label != FORECASTER:
            level = logging.WARNING  # the service's forecasts are not coming in time
        _LOG.log(
            level,
            "%s: orders use forecast: %s%s%s",
            self._agent_id,
            choice.label,
            how,
            "" if was is None else f"; before: {was}",
        )
        return True
