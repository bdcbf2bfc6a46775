"""Weather inputs for the forecast models: a pluggable provider and one that reads a file.

A :class:`WeatherProvider` answers, for a run of regular intervals, the mean global horizontal
irradiance (W/m2), the air temperature (deg C) and optionally the cloud cover (0..1) of each
interval, or ``None`` where it has nothing. The PV models use the irradiance and the demand
model the temperature when a provider is configured. :class:`RecordedWeather` reads recorded
(or forecast) weather from a CSV file: ``timestamp,ghi_w_m2,temp_c[,cloud]``, timestamps ISO
8601 with an offset (or UTC), each row the start of its period. An interval takes the mean of
the rows that start within it, or else the last row before it (hourly weather, 15-min data).
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from wattmesh.broker.errors import ConfigError

__all__ = ["RecordedWeather", "WeatherProvider", "WeatherSeries", "parse_timestamp"]

_MAX_HOLD_S = 3 * 3600
"""A row is held for at most this long when no row starts within an interval."""


@dataclass(frozen=True, slots=True)
class WeatherSeries:
    """Per-interval weather; ``None`` where the provider has no value."""

    ghi_w_m2: tuple[float | None, ...]
    temp_c: tuple[float | None, ...]
    cloud: tuple[float | None, ...]


class WeatherProvider(Protocol):
    """Weather for ``count`` intervals of ``interval_s`` seconds from ``start_epoch_s``."""

    def weather(self, start_epoch_s: int, interval_s: int, count: int) -> WeatherSeries: ...


def parse_timestamp(text: str) -> int:
    """UTC epoch seconds of an ISO 8601 timestamp with an offset or ``Z`` (naive: UTC)."""
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp())


def _number(text: str | None, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {text!r} is not a finite number")
    return value


class RecordedWeather:
    """A :class:`WeatherProvider` over rows read from a CSV file (see the module docstring)."""

    def __init__(
        self,
        epoch_s: list[int],
        ghi_w_m2: list[float | None],
        temp_c: list[float | None],
        cloud: list[float | None],
    ) -> None:
        if any(b <= a for a, b in itertools.pairwise(epoch_s)):
            raise ConfigError("weather timestamps must be strictly increasing")
        self._epoch_s = epoch_s
        self._columns = (ghi_w_m2, temp_c, cloud)

    @classmethod
    def from_csv(cls, path: Path) -> RecordedWeather:
        """Read ``path``; a malformed file raises :class:`ConfigError` (one line)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read weather file {path}: {exc.strerror}") from exc
        return cls.parse(text, name=str(path))

    @classmethod
    def parse(cls, text: str, *, name: str = "weather") -> RecordedWeather:
        """Parse CSV text (see the module docstring)."""
        reader = csv.DictReader(io.StringIO(text))
        missing = {"timestamp", "ghi_w_m2", "temp_c"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{name}: missing column(s) {', '.join(sorted(missing))}")
        epoch: list[int] = []
        cols: tuple[list[float | None], ...] = ([], [], [])
        for line, row in enumerate(reader, start=2):
            where = f"{name} line {line}"
            try:
                epoch.append(parse_timestamp(row["timestamp"] or ""))
            except ValueError:
                raise ConfigError(f"{where}: bad timestamp {row['timestamp']!r}") from None
            for col, key in zip(cols, ("ghi_w_m2", "temp_c", "cloud"), strict=True):
                col.append(_number(row.get(key), where))
        return cls(epoch, *cols)

    def weather(self, start_epoch_s: int, interval_s: int, count: int) -> WeatherSeries:
        out: tuple[list[float | None], ...] = ([], [], [])
        for i in range(count):
            begin = start_epoch_s + i * interval_s
            lo = bisect.bisect_left(self._epoch_s, begin)
            hi = bisect.bisect_left(self._epoch_s, begin + interval_s)
            rows = range(lo, hi)
            if not rows and lo > 0 and begin - self._epoch_s[lo - 1] < _MAX_HOLD_S:
                rows = range(lo - 1, lo)
            for col, source in zip(out, self._columns, strict=True):
                picks = [v for r in rows if (v := source[r]) is not None]
                col.append(sum(picks) / len(picks) if picks else None)
        return WeatherSeries(tuple(out[0]), tuple(out[1]), tuple(out[2]))
