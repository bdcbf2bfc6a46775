"""DSMR / ESMR P1 telegrams to meter readings (pure: no I/O).

dsmr-parser supplies the meaning of the telegram: which line holds which register
(its ``obis_references``), which registers each dialect has (its
``telegram_specifications``, mirrored in ``_DIALECTS`` below and checked against it
in tests/test_p1.py) and the meter-time conversion (its ``value_types.timestamp``).
The few lines the agent needs are cut and checked here, by dsmr-parser's rules: a
test compares every reading and every verdict with dsmr-parser's ``TelegramParser``.
That class lives in ``dsmr_parser.parsers``, which imports dlms-cosem (for encrypted
telegrams, with attrs, asn1crypto and dateutil) at module level: 5 MB of resident
memory the agent does not use (BENCHMARKS.md, agent footprint).

- CRC: CRC-16/ARC over ``/`` ... ``!``, against the 4 hex digits after ``!``.
- meter time: ``0-0:1.0.0`` is local time ``YYMMDDhhmmssX`` with ``X`` = ``S``
  (summer, CEST) or ``W`` (winter, CET). dsmr-parser resolves it in
  Europe/Amsterdam with the flag choosing the occurrence of the repeated autumn
  hour, and returns UTC; we keep whole epoch seconds.
- import = ``1-0:1.8.1 + 1-0:1.8.2`` (delivered to the client, tariff 1 + 2),
  export = ``1-0:2.8.1 + 1-0:2.8.2`` (delivered by the client); meters that only
  send totals (``1.8.0`` / ``2.8.0``) use those. kWh with 3 decimals become exact
  integer Wh (Decimal arithmetic, never floats).
- power = ``1-0:1.7.0 - 1-0:2.7.0`` (kW, 3 decimals) as integer W; + import, - export.

A telegram with a bad CRC, a malformed line among these, or that lacks a register is
counted and skipped. Lines the agent does not read (gas, voltages, messages) are not
looked at, so a malformed one of those does not cost the reading (dsmr-parser with
``throw_ex`` would reject the whole telegram).

Framing the byte stream into telegrams is :class:`TelegramFramer` here, with the
rule of dsmr-parser's ``TelegramBuffer`` (which lives in ``dsmr_parser.clients``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from dsmr_parser import obis_references as obis
from dsmr_parser.value_types import timestamp

from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering.errors import MeterError

__all__ = ["P1Version"]

_THOUSAND: Final = Decimal(1000)
# A telegram is a few kB; a stream that never closes one must not grow without bound.
_MAX_BUFFER_CHARS: Final = 64 * 1024
# A telegram runs from "/" to "!" and its CRC (optional: DSMR 2/3 have none); an
# incomplete telegram followed by a new "/" is discarded. dsmr-parser's own rule.
_TELEGRAM: Final = re.compile(r"/[^/]+?![A-F0-9]{0,4}\0?\r\n", re.DOTALL)
# dsmr-parser's TelegramParser: the CRC covers "/" up to the last "!"; the value
# groups of a line are the parenthesised runs of these characters.
_CRC_CONTENT: Final = re.compile(r"/.+!", re.DOTALL)
_CRC_VALUE: Final = re.compile(r"(?<=!)[0-9A-Z]{1,4}")
_VALUE_GROUP: Final = re.compile(r"(?<=\()[0-9a-zA-Z.*\-:]*(?=\))")


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_TABLE: Final = _crc16_table()


def crc16(text: str) -> int:
    """CRC-16/ARC (reflected polynomial 0xA001, initial 0) of an ASCII string."""
    crc = 0
    for char in text:
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ ord(char)) & 0xFF]
    return crc


class P1Version(StrEnum):
    """Telegram dialects (dsmr-parser specifications) wattmesh reads."""

    DSMR4 = "4"  # NL DSMR 4.x (10 s telegrams)
    DSMR5 = "5"  # NL DSMR 5.x (1 s telegrams)
    BELGIUM = "5B"  # Fluvius (BE)
    LUXEMBOURG = "5L"  # Smarty (LU), unencrypted
    SWEDEN = "5S"


# The lines read, by dsmr-parser's names; each dialect's specification
# (telegram_specifications V4, V5, BELGIUM_FLUVIUS, LUXEMBOURG_SMARTY, SWEDEN) lists
# the time and power lines and these registers (all with CRC).
_TARIFFS: Final = (
    "ELECTRICITY_USED_TARIFF_1",
    "ELECTRICITY_USED_TARIFF_2",
    "ELECTRICITY_DELIVERED_TARIFF_1",
    "ELECTRICITY_DELIVERED_TARIFF_2",
)
_COMMON: Final = (
    "P1_MESSAGE_TIMESTAMP",
    "CURRENT_ELECTRICITY_USAGE",
    "CURRENT_ELECTRICITY_DELIVERY",
)
_DIALECTS: Final[dict[P1Version, frozenset[str]]] = {
    P1Version.DSMR4: frozenset((*_COMMON, *_TARIFFS)),
    P1Version.DSMR5: frozenset((*_COMMON, *_TARIFFS, "ELECTRICITY_IMPORTED_TOTAL")),
    P1Version.BELGIUM: frozenset((*_COMMON, *_TARIFFS)),
    P1Version.LUXEMBOURG: frozenset(
        (*_COMMON, *_TARIFFS, "ELECTRICITY_IMPORTED_TOTAL", "ELECTRICITY_EXPORTED_TOTAL")
    ),
    P1Version.SWEDEN: frozenset(
        (*_COMMON, "ELECTRICITY_IMPORTED_TOTAL", "ELECTRICITY_EXPORTED_TOTAL")
    ),
}
_LINES: Final = {
    name: re.compile(getattr(obis, name), re.DOTALL | re.MULTILINE)
    for name in (*_COMMON, *_TARIFFS, "ELECTRICITY_IMPORTED_TOTAL", "ELECTRICITY_EXPORTED_TOTAL")
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


def check_crc(telegram: str) -> None:
    """Raises P1TelegramError unless the telegram's CRC matches (dsmr-parser's rule)."""
    content, given = _CRC_CONTENT.search(telegram), _CRC_VALUE.search(telegram)
    if content is None or given is None:
        raise P1TelegramError("unparsable telegram: no CRC", checksum=False)
    try:
        expected = int(given.group(), 16)
    except ValueError as exc:
        raise P1TelegramError(
            f"unparsable telegram: CRC {given.group()!r}", checksum=False
        ) from exc
    calculated = crc16(content.group())
    if calculated != expected:
        raise P1TelegramError(
            f"bad CRC: calculated {calculated:04X}, telegram says {expected:04X}", checksum=True
        )


@dataclass(frozen=True)
class _Value:
    """One line's value group: the text before ``*``, the unit after it, and the text
    as a number for a register line (None for an empty group or the meter time)."""

    text: str | None
    unit: str | None
    number: Decimal | None


def _line_value(name: str, line: str) -> _Value:
    groups = _VALUE_GROUP.findall(line)
    if len(groups) != 1:
        raise ValueError(f"malformed {name} line {line.strip()!r}")
    if not groups[0]:  # "()": no value (dsmr-parser: None), not an error yet
        return _Value(None, None, None)
    text, star, unit = groups[0].partition("*")
    if "*" in unit:
        raise ValueError(f"malformed {name} value {groups[0]!r}")
    number = None
    if name != "P1_MESSAGE_TIMESTAMP":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{name} value {text!r} is not a number") from None
    return _Value(text, unit if star else None, number)


def _lines(telegram: str, names: frozenset[str]) -> dict[str, _Value]:
    """The value of each named line present; every such line must be well formed,
    and the last one counts if a line is repeated (dsmr-parser's rules)."""
    found = {}
    for name in names:
        for line in _LINES[name].findall(telegram):
            found[name] = _line_value(name, line)
    return found


class P1Parser:
    """Parses single telegrams of one dialect (CRC checked)."""

    def __init__(self, version: P1Version = P1Version.DSMR5) -> None:
        self.version = version
        self._names = _DIALECTS[version]

    def reading(self, telegram: str) -> MeterReading:
        """The reading in one complete telegram (``/`` ... ``!CRC``).

        Raises P1TelegramError (``checksum=True`` for a CRC mismatch).
        """
        if not telegram.isascii():
            raise P1TelegramError("telegram is not ASCII", checksum=False)
        check_crc(telegram)
        try:
            lines = _lines(telegram, self._names)
        except ValueError as exc:
            raise P1TelegramError(f"unparsable telegram: {exc}", checksum=False) from exc
        try:
            return _to_reading(lines)
        except ValueError as exc:
            raise P1TelegramError(f"unusable telegram: {exc}", checksum=False) from exc


def _value(lines: dict[str, _Value], name: str, unit: str) -> Decimal | None:
    line = lines.get(name)
    if line is None:
        return None
    value = line.number
    if value is None or not value.is_finite():
        raise ValueError(f"{name} is not a number")
    if line.unit != unit:
        raise ValueError(f"{name} is in {line.unit!r}, expected {unit!r}")
    return value


def _register(lines: dict[str, _Value], tariffs: tuple[str, str], total: str) -> int:
    first, second = (_value(lines, name, "kWh") for name in tariffs)
    if first is not None and second is not None:
        return kwh_to_wh(first) + kwh_to_wh(second)
    single = _value(lines, total, "kWh")
    if single is None:
        raise ValueError(f"neither {' + '.join(tariffs)} nor {total} in the telegram")
    return kwh_to_wh(single)


def _to_reading(lines: dict[str, _Value]) -> MeterReading:
    stamp = lines.get("P1_MESSAGE_TIMESTAMP")
    when = None if stamp is None else timestamp(stamp.text or "")
    if when is None:
        raise ValueError("no valid meter time (0-0:1.0.0)")
    used = _value(lines, "CURRENT_ELECTRICITY_USAGE", "kW")
    returned = _value(lines, "CURRENT_ELECTRICITY_DELIVERY", "kW")
    if used is None or returned is None:
        raise ValueError("no present power (1-0:1.7.0 and 1-0:2.7.0)")
    return MeterReading(
        time=int(when.timestamp()),
        import_wh=_register(
            lines,
            ("ELECTRICITY_USED_TARIFF_1", "ELECTRICITY_USED_TARIFF_2"),
            "ELECTRICITY_IMPORTED_TOTAL",
        ),
        export_wh=_register(
            lines,
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
