"""Measured power series read from CSV: ``timestamp,value_w`` on a regular grid, with gaps.

Timestamps are ISO 8601 with an offset (or UTC), strictly increasing, on a regular grid of
5 minutes to 1 hour that divides a day; missing rows (and empty values) are gaps. Values are
the average power in W over the interval that starts at the timestamp. Anything else is a
:class:`ConfigError` naming the file and line, in one line.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from wattmesh.broker.errors import ConfigError
from wattmesh.forecasting._models import Series

__all__ = ["MeasuredSeries", "parse_measured_csv"]

MIN_INTERVAL_S = 300
MAX_INTERVAL_S = 3600


@dataclass(frozen=True, slots=True)
class MeasuredSeries:
    """Average power (W) per interval from ``start_epoch_s``; ``None`` marks a gap.

    ``utc_offset_s`` is the offset of the file's first timestamp: the households' clock.
    """

    start_epoch_s: int
    interval_s: int
    values_w: tuple[float | None, ...]
    utc_offset_s: int = 0

    @classmethod
    def from_energy(cls, series: Series, *, utc_offset_s: int = 0) -> MeasuredSeries:
        """A gapless Wh-per-interval history (the service's own) as average power in W."""
        to_w = 3600 / series.interval_s
        values = tuple(v * to_w for v in series.values_wh)
        return cls(series.start_epoch_s, series.interval_s, values, utc_offset_s)

    @property
    def gaps(self) -> int:
        """Intervals with no value (missing rows or empty values)."""
        return sum(v is None for v in self.values_w)

    def energy_wh(self) -> list[int]:
        """Integer Wh per interval, each gap filled with the value a day earlier (else the
        last value before it; else the first value): only earlier data fills a gap."""
        season = 86_400 // self.interval_s
        to_wh = self.interval_s / 3600
        known = [v for v in self.values_w if v is not None]
        first = round(known[0] * to_wh) if known else 0
        out: list[int] = []
        for i, v in enumerate(self.values_w):
            if v is not None:
                out.append(round(v * to_wh))
            elif i >= season:
                out.append(out[i - season])
            else:
                out.append(out[-1] if out else first)
        return out


def _stamp(text: str, where: str) -> tuple[int, int]:
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: bad timestamp {text!r} (want ISO 8601)") from None
    offset = stamp.utcoffset()
    if offset is None:  # no offset: UTC
        return int(stamp.replace(tzinfo=UTC).timestamp()), 0
    return int(stamp.timestamp()), int(offset.total_seconds())


def _value(text: str | None, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: value_w {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: value_w {text!r} is not a finite number")
    return value


def _interval(epochs: list[int], name: str) -> int:
    diffs = {b - a for a, b in itertools.pairwise(epochs)}
    step = min(diffs)
    if not MIN_INTERVAL_S <= step <= MAX_INTERVAL_S or 86_400 % step:
        raise ConfigError(
            f"{name}: interval of {step} s is not one from 5 minutes to 1 hour that divides a day"
        )
    if any(d % step for d in diffs):
        raise ConfigError(f"{name}: timestamps are not on a regular {step} s grid")
    return step


def parse_measured_csv(text: str, *, name: str) -> MeasuredSeries:
    """Parse ``timestamp,value_w`` CSV text (see the module docstring)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"timestamp", "value_w"} - set(reader.fieldnames or ())
    if missing:
        raise ConfigError(f"{name}: missing column(s) {', '.join(sorted(missing))}")
    epochs: list[int] = []
    values: list[float | None] = []
    offset = 0
    for line, row in enumerate(reader, start=2):
        where = f"{name} line {line}"
        epoch, row_offset = _stamp(row["timestamp"] or "", where)
        if epochs and epoch == epochs[-1]:
            raise ConfigError(f"{where}: duplicate timestamp {row['timestamp']}")
        if epochs and epoch < epochs[-1]:
            raise ConfigError(f"{where}: timestamps are not sorted ({row['timestamp']})")
        if not epochs:
            offset = row_offset
        epochs.append(epoch)
        values.append(_value(row["value_w"], where))
    if len(epochs) < 2:
        raise ConfigError(f"{name}: fewer than two rows of data")
    step = _interval(epochs, name)
    grid: list[float | None] = [None] * ((epochs[-1] - epochs[0]) // step + 1)
    for epoch, value in zip(epochs, values, strict=True):
        grid[(epoch - epochs[0]) // step] = value
    return MeasuredSeries(epochs[0], step, tuple(grid), offset)
