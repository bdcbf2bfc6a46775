"""Time-of-use grid tariffs: a daily schedule of retail and feed-in prices, in UTC hours.

UTC on purpose: an hour of UTC is never skipped or repeated, so every interval maps to
exactly one period. A local schedule (e.g. peak 17:00-21:00 local time) is written in
UTC by the operator, one schedule per DST season. An interval is priced by the period
its start falls into; :class:`ledger.clearing.GridTariff` is the tariff of one interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wattmesh.ledger.clearing import GridTariff

__all__ = ["TariffSchedule", "TouPeriod"]

_KEYS = {"start_hour_utc", "retail_micro_per_kwh", "feed_in_micro_per_kwh"}


@dataclass(frozen=True)
class TouPeriod:
    """From ``start_hour_utc`` (0-23) until the next period's start (or midnight UTC)."""

    start_hour_utc: int
    tariff: GridTariff


@dataclass(frozen=True)
class TariffSchedule:
    """Periods with strictly increasing start hours, the first at 0."""

    periods: tuple[TouPeriod, ...]

    def __post_init__(self) -> None:
        hours = [p.start_hour_utc for p in self.periods]
        if not hours or hours[0] != 0:
            raise ValueError("a tariff schedule needs a first period starting at hour 0")
        if any(not 0 <= h <= 23 for h in hours) or hours != sorted(set(hours)):
            raise ValueError("period start hours must be distinct, increasing, in 0..23")

    @classmethod
    def flat(cls, tariff: GridTariff) -> TariffSchedule:
        return cls((TouPeriod(0, tariff),))

    def at(self, epoch_s: int) -> GridTariff:
        """The tariff in force at ``epoch_s`` (an interval's start, epoch seconds UTC)."""
        hour = epoch_s // 3600 % 24
        current = self.periods[0].tariff
        for p in self.periods:
            if p.start_hour_utc > hour:
                break
            current = p.tariff
        return current

    @classmethod
    def from_json(cls, rows: Sequence[Mapping[str, Any]]) -> TariffSchedule:
        """From ``[{"start_hour_utc", "retail_micro_per_kwh", "feed_in_micro_per_kwh"}]``.

        Raises ValueError naming the row on a missing or unknown field, a non-integer
        (including bool and float) or an invalid tariff.
        """
        periods = []
        for i, row in enumerate(rows):
            if set(row) != _KEYS:
                raise ValueError(f"tariff period {i}: fields must be {sorted(_KEYS)}")
            values = [row[k] for k in sorted(_KEYS)]
            if any(type(v) is not int for v in values):
                raise ValueError(f"tariff period {i}: every field must be an integer")
            periods.append(
                TouPeriod(
                    row["start_hour_utc"],
                    GridTariff(row["retail_micro_per_kwh"], row["feed_in_micro_per_kwh"]),
                )
            )
        return cls(tuple(periods))
