"""DSMR / ESMR P1 telegrams to meter readings (pure: no I/O).

``dsmr-parser`` frames, CRC-checks and parses the telegrams; this module turns a
parsed telegram into a :class:`~agents.meter.MeterReading`:

- meter time: ``0-0:1.0.0`` is local time ``YYMMDDhhmmssX`` with ``X`` = ``S``
  (summer, CEST) or ``W`` (winter, CET). dsmr-parser resolves it in
  Europe/Amsterdam with the flag choosing the occurrence of the repeated autumn
  hour, and returns UTC; we keep whole epoch seconds.
- import = ``1-0:1.8.1 + 1-0:1.8.2`` (delivered to the client, tariff 1 + 2),
  export = ``1-0:2.8.1 + 1-0:2.8.2`` (delivered by the client); meters that only
  send totals (``1.8.0`` / ``2.8.0``) use those. kWh with 3 decimals become exact
  integer Wh (Decimal arithmetic, never floats).
- power = ``1-0:1.7.0 - 1-0:2.7.0`` (kW, 3 decimals) as integer W; + import, - export.

A telegram with a bad CRC or that lacks a register is counted and skipped.

Framing the byte stream into telegrams is :class:`TelegramFramer` here, with the
rule of dsmr-parser's ``TelegramBuffer``: that class lives in ``dsmr_parser.clients``,
whose package also loads dsmr-parser's serial and asyncio clients (serialx), about
1.6 MB of resident memory the agent does not use (see BENCHMARKS.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from agents.meter import MeterReading
from agents.metering.errors import MeterError

_THOUSAND: Final = Decimal(1000)
# A telegram is a few kB; a stream that never closes one must not grow without bound.
_MAX_BUFFER_CHARS: Final = 64 * 1024
# A telegram runs from "/" to "!" and its CRC (optional: DSMR 2/3 have none); an
# incomplete telegram followed by a new "/" is discarded. dsmr-parser's own rule.
_TELEGRAM: Final = re.compile(r"/[^/]+?![A-F0-9]{0,4}\0?\r\n", re.DOTALL)


class P1Version(StrEnum):
    """Telegram dialects (dsmr-parser specifications) wattmesh reads."""

    DSMR4 = "4"  # NL DSMR 4.x (10 s telegrams)
    DSMR5 = "5"  # NL DSMR 5.x (1 s telegrams)
    BELGIUM = "5B"  # Fluvius (BE)
    LUXEMBOURG = "5L"  # Smarty (LU), unencrypted
    SWEDEN = "5S"


_SPECIFICATIONS: Final[dict[P1Version, dict[str, Any]]] = {
    P1Version.DSMR4: telegram_specifications.V4,
    P1Version.DSMR5: telegram_specifications.V5,
    P1Version.BELGIUM: telegram_specifications.BELGIUM_FLUVIUS,
    P1Version.LUXEMBOURG: telegram_specifications.LUXEMBOURG_SMARTY,
    P1Version.SWEDEN: telegram_specifications.SWEDEN,
}


class P1TelegramError(MeterError):
    """One telegram that cannot be used; ``checksum`` tells a CRC failure apart."""

    def __init__(self, detail: str, *, checksum: bool) -> None:
        super().__init__(detail)
        self.checksum = checksum


def kwh_to_wh(value: Decimal) -> int:
    """Exact integer Wh from a kWh register; refuses values finer than 1 Wh."""
    wh = value * _THOUSAND
    if wh != wh.to_integral_value():
        raise ValueError(f"{value} kWh is not a whole number of Wh")
    return int(wh)


def kw_to_w(value: Decimal) -> int:
    """Exact integer W from a kW value; refuses values finer than 1 W."""
    return kwh_to_wh(value)  # the same factor 1000


class P1Parser:
    """Parses single telegrams of one dialect (CRC checked)."""

    def __init__(self, version: P1Version = P1Version.DSMR5) -> None:
        self.version = version
        self._parser = TelegramParser(_SPECIFICATIONS[version])

    def reading(self, telegram: str) -> MeterReading:
        """The reading in one complete telegram (``/`` ... ``!CRC``).

        Raises P1TelegramError (``checksum=True`` for a CRC mismatch).
        """
        if not telegram.isascii():
            raise P1TelegramError("telegram is not ASCII", checksum=False)
        try:
            parsed = self._parser.parse(telegram, throw_ex=True)
        except InvalidChecksumError as exc:
            raise P1TelegramError(f"bad CRC: {exc}", checksum=True) from exc
        except (ParseError, ValueError, TypeError) as exc:
            raise P1TelegramError(f"unparsable telegram: {exc}", checksum=False) from exc
        try:
            return _to_reading(parsed)
        except (ValueError, TypeError, AttributeError) as exc:
            raise P1TelegramError(f"unusable telegram: {exc}", checksum=False) from exc


def _value(telegram: Any, name: str, unit: str) -> Decimal | None:
    obj = getattr(telegram, name, None)
    if obj is None:
        return None
    value = obj.value
    if not isinstance(value, Decimal):
        raise ValueError(f"{name} is not a number")
    if obj.unit != unit:
        raise ValueError(f"{name} is in {obj.unit!r}, expected {unit!r}")
    return value


def _register(telegram: Any, tariffs: tuple[str, str], total: str) -> int:
    first, second = (_value(telegram, name, "kWh") for name in tariffs)
    if first is not None and second is not None:
        return kwh_to_wh(first) + kwh_to_wh(second)
    single = _value(telegram, total, "kWh")
    if single is None:
        raise ValueError(f"neither {' + '.join(tariffs)} nor {total} in the telegram")
    return kwh_to_wh(single)


def _to_reading(telegram: Any) -> MeterReading:
    stamp = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    when = None if stamp is None else stamp.value
    if when is None:
        raise ValueError("no valid meter time (0-0:1.0.0)")
    used = _value(telegram, "CURRENT_ELECTRICITY_USAGE", "kW")
    returned = _value(telegram, "CURRENT_ELECTRICITY_DELIVERY", "kW")
    if used is None or returned is None:
        raise ValueError("no present power (1-0:1.7.0 and 1-0:2.7.0)")
    return MeterReading(
        time=int(when.timestamp()),
        import_wh=_register(
            telegram,
            ("ELECTRICITY_USED_TARIFF_1", "ELECTRICITY_USED_TARIFF_2"),
            "ELECTRICITY_IMPORTED_TOTAL",
        ),
        export_wh=_register(
            telegram,
            ("ELECTRICITY_DELIVERED_TARIFF_1", "ELECTRICITY_DELIVERED_TARIFF_2"),
            "ELECTRICITY_EXPORTED_TOTAL",
        ),
        pv_wh=0,
        power_w=kw_to_w(used) - kw_to_w(returned),
    )


@dataclass
class P1Counts:
    """What a decoder has seen: good telegrams, CRC failures, other bad telegrams."""

    good: int = 0
    bad_checksum: int = 0
    bad_other: int = 0

    @property
    def bad(self) -> int:
        return self.bad_checksum + self.bad_other


class TelegramFramer:
    """Cuts a character stream into complete telegrams (``/`` ... ``!CRC\\r\\n``)."""

    def __init__(self) -> None:
        self._buffer = ""

    def append(self, data: str) -> None:
        self._buffer += data

    def telegrams(self) -> list[str]:
        """The complete telegrams buffered so far, removed (with what precedes them)."""
        if "!" not in self._buffer:  # no telegram end yet: do not scan
            return []
        found, end = [], 0
        for match in _TELEGRAM.finditer(self._buffer):
            found.append(match.group())
            end = match.end()
        self._buffer = self._buffer[end:]
        return found


class P1Decoder:
    """Turns a byte stream into readings; bad telegrams are counted and skipped."""

    def __init__(self, version: P1Version = P1Version.DSMR5) -> None:
        self._parser = P1Parser(version)
        self._buffer = TelegramFramer()
        self.counts = P1Counts()
        self.last_error: str | None = None
        self._pending_chars = 0  # appended since the last complete telegram

    def feed(self, data: bytes) -> list[MeterReading]:
        """Readings completed by ``data`` (possibly none), in stream order."""
        # Like dsmr-parser's own protocol: latin-1 on the line, telegrams are ASCII.
        self._buffer.append(data.decode("latin-1"))
        self._pending_chars += len(data)
        readings = []
        for telegram in self._buffer.telegrams():
            self._pending_chars = 0
            try:
                readings.append(self._parser.reading(telegram))
            except P1TelegramError as exc:
                if exc.checksum:
                    self.counts.bad_checksum += 1
                else:
                    self.counts.bad_other += 1
                self.last_error = str(exc)
                continue
            self.counts.good += 1
        if self._pending_chars > _MAX_BUFFER_CHARS:  # no telegram end in sight
            self._buffer = TelegramFramer()
            self._pending_chars = 0
            self.counts.bad_other += 1
            self.last_error = "no complete telegram in 64 KiB of data"
        return readings
