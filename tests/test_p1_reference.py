"""agents.metering.p1 reads telegrams exactly as dsmr-parser's TelegramParser does.

The agent checks the CRC and cuts the lines it needs itself (dsmr_parser.parsers
would load dlms-cosem, 5 MB resident; see BENCHMARKS.md). Here dsmr-parser's own
parser, with the dialect's specification, is the reference: on generated telegrams
(registers, meter times around both DST changes, missing lines, total-only meters,
malformed values, corrupted bytes with and without a fitting CRC) both give the same
reading or both refuse, for the same kind of reason (CRC or not).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import CosemParser, TelegramParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.p1kit import crc16_arc, telegram
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering import p1
from wattmesh.agents.metering.p1 import P1Parser, P1TelegramError, P1Version, kwh_to_wh

SPECIFICATIONS = {
    P1Version.DSMR4: telegram_specifications.V4,
    P1Version.DSMR5: telegram_specifications.V5,
    P1Version.BELGIUM: telegram_specifications.BELGIUM_FLUVIUS,
    P1Version.LUXEMBOURG: telegram_specifications.LUXEMBOURG_SMARTY,
    P1Version.SWEDEN: telegram_specifications.SWEDEN,
}
REGISTERS = ("used_t1", "used_t2", "delivered_t1", "delivered_t2")


def _value(parsed: Any, name: str, unit: str) -> Decimal | None:
    obj = getattr(parsed, name, None)
    if obj is None:
        return None
    if not isinstance(obj.value, Decimal) or not obj.value.is_finite():
        raise ValueError(f"{name} is not a number")
    if obj.unit != unit:
        raise ValueError(f"{name} is in {obj.unit!r}")
    return obj.value


def _register(parsed: Any, tariffs: tuple[str, str], total: str) -> int:
    first, second = (_value(parsed, name, "kWh") for name in tariffs)
    if first is not None and second is not None:
        return kwh_to_wh(first) + kwh_to_wh(second)
    single = _value(parsed, total, "kWh")
    if single is None:
        raise ValueError("no register")
    return kwh_to_wh(single)


def reference(version: P1Version, text: str) -> MeterReading | str:
    """What dsmr-parser makes of ``text``: the reading, or "checksum" / "other"."""
    if not text.isascii():
        return "other"
    try:
        parsed = TelegramParser(SPECIFICATIONS[version]).parse(text, throw_ex=True)
        stamp = getattr(parsed, "P1_MESSAGE_TIMESTAMP", None)
        if stamp is None or stamp.value is None:
            return "other"
        used = _value(parsed, "CURRENT_ELECTRICITY_USAGE", "kW")
        returned = _value(parsed, "CURRENT_ELECTRICITY_DELIVERY", "kW")
        if used is None or returned is None:
            return "other"
        return MeterReading(
            time=int(stamp.value.timestamp()),
            import_wh=_register(
                parsed,
                ("ELECTRICITY_USED_TARIFF_1", "ELECTRICITY_USED_TARIFF_2"),
                "ELECTRICITY_IMPORTED_TOTAL",
            ),
            export_wh=_register(
                parsed,
                ("ELECTRICITY_DELIVERED_TARIFF_1", "ELECTRICITY_DELIVERED_TARIFF_2"),
                "ELECTRICITY_EXPORTED_TOTAL",
            ),
            pv_wh=0,
            power_w=int(used * 1000) - int(returned * 1000)
            if (used * 1000) % 1 == 0 and (returned * 1000) % 1 == 0
            else _finer_than_a_watt(),
        )
    except InvalidChecksumError:
        return "checksum"
    except (ParseError, ValueError, TypeError, ArithmeticError):
        return "other"


def _finer_than_a_watt() -> int:
    raise ValueError("finer than 1 W")


def ours(version: P1Version, text: str) -> MeterReading | str:
    try:
        return P1Parser(version).reading(text)
    except P1TelegramError as exc:
        return "checksum" if exc.checksum else "other"


def _with_crc(body: str) -> str:
    """``body`` (up to and including "!") with its correct CRC."""
    return body + f"{crc16_arc(body.encode('latin-1')):04X}\r\n"


KWH = st.builds(lambda a, b: f"{a:06d}.{b:03d}", st.integers(0, 999_999), st.integers(0, 999))
KW = st.builds(lambda a, b: f"{a:02d}.{b:03d}", st.integers(0, 99), st.integers(0, 999))
# Around both DST changes of 2026 (29 March, 25 October) and ordinary days.
STAMP = st.builds(
    lambda day, h, m, s, flag: f"{day}{h:02d}{m:02d}{s:02d}{flag}",
    st.sampled_from(["260329", "261025", "261026", "261201", "260701"]),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["S", "W"]),
)
ODD = st.sampled_from(
    ["", "abc", "NaN", "sNaN", "1E3", "-1.000", "+1.000", "1.2.3", "12*3", "Infinity",
     "1.0001", "1.0", " 1.000", "0x10", "2613011430", "261301143015W", "261201143015X",
     "261201143015", "26120114301522W", "261201256015S"]
)  # fmt: skip
OURS = ("0-0:1.0.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2", "1-0:1.7.0",
        "1-0:2.7.0", "1-0:1.8.0", "1-0:2.8.0")  # fmt: skip
KINDS = ("value", "omit", "totals", "edit", "repeat", "byte")
EDITS = ("(1)", "*Wh", "*kVA", "unclosed", "space", "empty", "two-stars")


def _edit(line: str, edit: str) -> str:
    match edit:
        case "(1)":
            return line + "(1)"
        case "*Wh" | "*kVA":
            return line.replace("*kWh", edit).replace("*kW)", edit + ")")
        case "unclosed":
            return line[:-1]
        case "space":
            return line.replace("(", "( ", 1)
        case "empty":
            return line[: line.index("(")] + "()"
        case _:
            return line[:-1] + "*s)"


@st.composite
def telegrams(draw: st.DrawFn) -> str:
    """A valid DSMR 5 telegram with up to three perturbations."""
    fields = {name: draw(KWH) for name in REGISTERS}
    fields |= {"stamp": draw(STAMP), "power_used": draw(KW), "power_delivered": draw(KW)}
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=3))
    omit: list[str] = []
    totals = None
    for kind in kinds:
        if kind == "value":
            fields[draw(st.sampled_from(sorted(fields)))] = draw(ODD)
        elif kind == "omit":
            omit.append(draw(st.sampled_from(OURS)))
        elif kind == "totals":
            totals = (draw(KWH), draw(st.one_of(KWH, ODD)))
    text = telegram(omit=tuple(omit), totals=totals, **fields).decode("ascii")
    # A changed byte comes last: a later CRC fit would turn it into a malformed line
    # the agent does not read (the one difference, see the test below).
    for kind in sorted(kinds, key=lambda k: k == "byte"):
        if "!" not in text:  # a changed byte took the end of the telegram
            break
        lines = text[: text.rindex("!")].split("\r\n")
        ours_at = [i for i, line in enumerate(lines) if line.startswith(OURS)]
        if kind in ("edit", "repeat") and ours_at:  # the CRC is made to fit
            i = draw(st.sampled_from(ours_at))
            if kind == "edit":
                lines[i] = _edit(lines[i], draw(st.sampled_from(EDITS)))
            else:  # the same line again, later, with another value
                again = lines[i][: lines[i].index("(")] + "(" + draw(st.one_of(KWH, ODD)) + "*kWh)"
                lines.insert(draw(st.integers(i + 1, len(lines))), again)
            text = _with_crc("\r\n".join(lines) + "!")
        elif kind == "byte":  # one byte changed on the line: the CRC does not fit
            index = draw(st.integers(0, len(text) - 1))
            text = (
                text[:index]
                + draw(st.sampled_from("0179AFZ/!()*:.\r\n x\u00e9"))
                + text[index + 1 :]
            )
    return text


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from(P1Version), text=telegrams())
@example(version=P1Version.DSMR5, text=telegram().decode("ascii"))
@example(version=P1Version.SWEDEN, text=telegram(totals=("1.000", "2.000")).decode("ascii"))
def test_readings_and_verdicts_agree_with_dsmr_parser(version: P1Version, text: str) -> None:
    assert ours(version, text) == reference(version, text)


def test_the_generated_telegrams_cover_every_verdict() -> None:
    # The comparison above is only worth something if both sides do refuse telegrams.
    good = telegram().decode("ascii")
    bad_crc = good.replace("012345.678", "012345.679")
    bad_value = _with_crc(good[: good.rindex("!") + 1].replace("01.193*kW", "01.193*W"))
    verdicts = {ours(P1Version.DSMR5, t) for t in (bad_crc, bad_value)}
    assert verdicts == {"checksum", "other"}
    assert isinstance(ours(P1Version.DSMR5, good), MeterReading)
    for text in (good, bad_crc, bad_value):
        assert ours(P1Version.DSMR5, text) == reference(P1Version.DSMR5, text)


def test_dialects_read_the_lines_dsmr_parsers_specifications_list() -> None:
    for version, specification in SPECIFICATIONS.items():
        listed = {
            o["value_name"]: o["obis_reference"]
            for o in specification["objects"]
            if isinstance(o["value_parser"], CosemParser)
        }
        assert specification["checksum_support"] and not specification.get("general_global_cipher")
        read = p1._DIALECTS[version]
        assert {name: listed.get(name) for name in read} == {
            name: p1._LINES[name].pattern for name in read
        }
        # and no register line the agent reads is missing from the dialect
        assert {n for n in p1._LINES if n in listed} == set(read)


def test_crc_agrees_with_dsmr_parser() -> None:
    for text in (telegram().decode("ascii"), "/x!", "/" + "ab\r\n" * 500 + "!"):
        assert p1.crc16(text) == TelegramParser.crc16(text)


def test_a_malformed_line_the_agent_does_not_read_does_not_cost_the_reading() -> None:
    # The one deliberate difference: dsmr-parser (throw_ex) refuses the whole telegram.
    good = telegram().decode("ascii")
    body = good[: good.rindex("!") + 1].replace("0-0:96.1.1(4530", "0-0:96.1.1(45 30")
    text = _with_crc(body)
    assert reference(P1Version.DSMR5, text) == "other"
    assert ours(P1Version.DSMR5, text) == ours(P1Version.DSMR5, good)
