"""P1 telegrams: exact registers, CRC, DST-aware meter time, bad telegrams skipped."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from dsmr_parser.clients.telegram_buffer import TelegramBuffer
from dsmr_parser.parsers import TelegramParser
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.p1kit import corrupt, crc16_arc, telegram
from wattmesh.agents.metering.p1 import (
    P1Decoder,
    P1Parser,
    P1TelegramError,
    P1Version,
    TelegramFramer,
    kwh_to_wh,
)


def _utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_fixture_crc_agrees_with_dsmr_parser() -> None:
    body = telegram().split(b"!")[0] + b"!"
    assert crc16_arc(body) == TelegramParser.crc16(body.decode("ascii"))
    assert crc16_arc(b"123456789") == 0xBB3D  # the CRC-16/ARC check value


def test_registers_are_exact_integer_wh_and_power_w() -> None:
    reading = P1Parser().reading(telegram().decode("ascii"))
    assert reading.import_wh == 12_345_678 + 9_876_543
    assert reading.export_wh == 1_234_567 + 2_345_678
    assert reading.power_w == 1193
    assert reading.pv_wh == 0
    assert reading.time == _utc(2026, 12, 1, 13, 30, 15)  # 14:30:15 CET


def test_power_is_delivered_minus_returned() -> None:
    text = telegram(power_used="00.000", power_delivered="02.514").decode("ascii")
    assert P1Parser().reading(text).power_w == -2514


def test_large_registers_stay_exact() -> None:
    text = telegram(used_t1="999999.999", used_t2="000000.001").decode("ascii")
    assert P1Parser().reading(text).import_wh == 1_000_000_000


def test_kwh_finer_than_a_watt_hour_is_refused() -> None:
    assert kwh_to_wh(Decimal("0.001")) == 1
    with pytest.raises(ValueError, match="whole number"):
        kwh_to_wh(Decimal("0.0005"))


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        # spring 2026-03-29: 02:00 CET jumps to 03:00 CEST
        ("260329015959W", _utc(2026, 3, 29, 0, 59, 59)),
        ("260329030000S", _utc(2026, 3, 29, 1, 0, 0)),
        ("260329030001S", _utc(2026, 3, 29, 1, 0, 1)),
        # autumn 2026-10-25: 03:00 CEST falls back to 02:00 CET, 02:xx happens twice
        ("261025015959S", _utc(2026, 10, 24, 23, 59, 59)),
        ("261025020000S", _utc(2026, 10, 25, 0, 0, 0)),
        ("261025023000S", _utc(2026, 10, 25, 0, 30, 0)),
        ("261025025959S", _utc(2026, 10, 25, 0, 59, 59)),
        ("261025020000W", _utc(2026, 10, 25, 1, 0, 0)),
        ("261025023000W", _utc(2026, 10, 25, 1, 30, 0)),
        ("261025030000W", _utc(2026, 10, 25, 2, 0, 0)),
        # plain summer and winter days
        ("260701120000S", _utc(2026, 7, 1, 10, 0, 0)),
        ("260115120000W", _utc(2026, 1, 15, 11, 0, 0)),
    ],
)
def test_meter_time_is_converted_to_utc_across_dst_changes(stamp: str, expected: int) -> None:
    assert P1Parser().reading(telegram(stamp=stamp).decode("ascii")).time == expected


def test_autumn_repeated_hour_stays_monotonic_every_ten_minutes() -> None:
    stamps = [f"26102501{m}S" for m in ("4000", "5000")]
    stamps += [f"26102502{m}S" for m in ("0000", "1000", "2000", "3000", "4000", "5000")]
    stamps += [f"26102502{m}W" for m in ("0000", "1000", "2000", "3000", "4000", "5000")]
    stamps += ["261025030000W"]
    decoder = P1Decoder()
    times = [r.time for r in decoder.feed(b"".join(telegram(stamp=s) for s in stamps))]
    assert len(times) == len(stamps)
    assert [b - a for a, b in itertools.pairwise(times)] == [600] * (len(times) - 1)


def test_corrupted_telegram_is_counted_and_skipped() -> None:
    good1 = telegram(stamp="261201143015W")
    bad = corrupt(telegram(stamp="261201143016W"))
    good2 = telegram(stamp="261201143017W", used_t1="012345.679")
    decoder = P1Decoder()
    readings = decoder.feed(good1 + bad + good2)
    assert [r.time for r in readings] == [
        _utc(2026, 12, 1, 13, 30, 15),
        _utc(2026, 12, 1, 13, 30, 17),
    ]
    assert readings[1].import_wh == readings[0].import_wh + 1
    assert (decoder.counts.good, decoder.counts.bad_checksum, decoder.counts.bad_other) == (2, 1, 0)
    assert decoder.last_error is not None and "CRC" in decoder.last_error
    with pytest.raises(P1TelegramError) as info:
        P1Parser().reading(bad.decode("ascii"))
    assert info.value.checksum


def test_telegram_without_a_register_is_counted_as_bad() -> None:
    decoder = P1Decoder()
    assert decoder.feed(telegram(omit=("1-0:2.7.0",))) == []
    assert (decoder.counts.good, decoder.counts.bad_checksum, decoder.counts.bad_other) == (0, 0, 1)
    assert decoder.last_error is not None and "power" in decoder.last_error


def test_byte_by_byte_feed_gives_the_same_readings_and_skips_leading_garbage() -> None:
    stream = b"12*kWh)\r\n!AB12\r\n" + telegram() + telegram(stamp="261201143016W")
    whole = P1Decoder().feed(stream)
    decoder = P1Decoder()
    pieces = [r for i in range(len(stream)) for r in decoder.feed(stream[i : i + 1])]
    assert pieces == whole and len(whole) == 2


def test_endless_garbage_does_not_grow_the_buffer_without_bound() -> None:
    decoder = P1Decoder()
    for _ in range(20):
        decoder.feed(b"/" + b"x" * 8192)
    assert decoder.counts.bad_other >= 1
    assert decoder.feed(telegram()) != []


@pytest.mark.parametrize("version", [P1Version.DSMR4, P1Version.BELGIUM, P1Version.LUXEMBOURG])
def test_tariff_dialects_read_the_same_registers(version: P1Version) -> None:
    reading = P1Parser(version).reading(telegram().decode("ascii"))
    assert (reading.import_wh, reading.export_wh) == (22_222_221, 3_580_245)


def test_total_only_meters_use_the_total_registers() -> None:
    text = telegram(totals=("004321.009", "000012.340")).decode("ascii")
    reading = P1Parser(P1Version.SWEDEN).reading(text)
    assert (reading.import_wh, reading.export_wh) == (4_321_009, 12_340)
    # dsmr-parser's DSMR 5 specification has no 2.8.0 line: such a telegram is refused
    with pytest.raises(P1TelegramError, match="ELECTRICITY_EXPORTED_TOTAL"):
        P1Parser(P1Version.DSMR5).reading(text)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(["tele", "noise", "cut", "slash", "bang"]), min_size=1, max_size=8
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_framer_frames_like_dsmr_parsers_telegram_buffer(parts: list[str], cuts: list[int]) -> None:
    # The agent frames with its own TelegramFramer (so that dsmr_parser.clients, and
    # serialx with it, is not loaded): it must cut any stream exactly as dsmr-parser does.
    whole = telegram().decode("ascii")
    pieces = {"tele": whole, "noise": "garbage\r\n", "cut": whole[:300], "slash": "/"}
    pieces["bang"] = "!\r\n"
    stream = "".join(pieces[p] for p in parts)
    ours, theirs = TelegramFramer(), TelegramBuffer()
    framed: list[str] = []
    reference: list[str] = []
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(bounds):
        ours.append(stream[start:end])
        theirs.append(stream[start:end])
        framed += ours.telegrams()
        reference += list(theirs.get_all())
    assert framed == reference
    if set(parts) == {"tele"}:
        assert framed == [whole] * len(parts)
