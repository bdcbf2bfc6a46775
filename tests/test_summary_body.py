"""The ledger's per-interval ``summary`` body: round trip, strict schema, its topic."""

from __future__ import annotations

from typing import Any

import pytest

from tests.messagekit import (
    INTERVAL,
    KEY,
    OTHER,
    encode,
    reason_of,
    sign,
    wire_obj,
    with_at,
    with_raw_at,
    without_at,
)
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.messages import (
    MAX_PRICE_MICRO_PER_KWH,
    AnnouncementBody,
    SummaryBody,
    decode_message,
)
from wattmesh.broker.topics import Topics

SUMMARY = SummaryBody(
    interval=INTERVAL,
    orders=17,
    readings=19,
    households=20,
    trades=6,
    volume_wh=4_321,
    price_micro_per_kwh=190_000,
    tree_size=1_234,
    root="0123456789abcdef" * 4,
    rejections={"replay": 2, "bad_signature": 1},
    redeliveries=3,
)
BODY = ("signed", "body")


def test_a_summary_signs_decodes_and_verifies() -> None:
    message = sign(SUMMARY)
    decoded = decode_message(message.to_wire())
    decoded.verify(KEY.verifying)
    assert decoded.header.kind == "summary" and decoded.header.interval == INTERVAL
    assert decoded.body_as(SummaryBody) == SUMMARY
    assert decoded.signed_bytes == message.signed_bytes
    with pytest.raises(MessageError) as info:
        decoded.verify(OTHER.verifying)
    assert info.value.reason is RejectReason.KEY_MISMATCH
    with pytest.raises(MessageError):
        decoded.body_as(AnnouncementBody)


def test_the_wire_names_every_field_and_sorts_the_reasons() -> None:
    body = wire_obj(sign(SUMMARY))["signed"]["body"]
    assert body == {
        "interval": INTERVAL,
        "orders": 17,
        "readings": 19,
        "households": 20,
        "trades": 6,
        "volume_wh": 4_321,
        "price_micro_per_kwh": 190_000,
        "tree_size": 1_234,
        "root": "0123456789abcdef" * 4,
        "rejections": {"bad_signature": 1, "replay": 2},
        "redeliveries": 3,
    }


def test_no_clearing_price_and_no_rejections_round_trip() -> None:
    quiet = SummaryBody(INTERVAL, 0, 3, 3, 0, 0, None, 9, "ab" * 32, {}, 0)
    assert decode_message(sign(quiet).to_wire()).body == quiet


@pytest.mark.parametrize("key", sorted(SUMMARY.to_json()))
def test_every_field_is_required(key: str) -> None:
    assert reason_of(encode(without_at(wire_obj(sign(SUMMARY)), (*BODY, key)))) is (
        RejectReason.SCHEMA
    )


@pytest.mark.parametrize("value", [None, 0, "x"])
def test_an_unknown_field_is_refused(value: Any) -> None:
    payload = encode(with_at(wire_obj(sign(SUMMARY)), (*BODY, "extra"), value))
    assert reason_of(payload) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("root",), "AB" * 32, RejectReason.SCHEMA),  # lowercase hex only
        (("root",), "ab" * 31, RejectReason.SCHEMA),
        (("root",), "zz" * 32, RejectReason.SCHEMA),
        (("root",), "", RejectReason.SCHEMA),
        (("root",), 0, RejectReason.SCHEMA),
        (("tree_size",), 0, RejectReason.OUT_OF_BOUNDS),  # a closed interval logged something
        (("orders",), -1, RejectReason.OUT_OF_BOUNDS),
        (("volume_wh",), True, RejectReason.SCHEMA),
        (("price_micro_per_kwh",), MAX_PRICE_MICRO_PER_KWH + 1, RejectReason.OUT_OF_BOUNDS),
        (("price_micro_per_kwh",), "190000", RejectReason.SCHEMA),
        (("rejections",), [], RejectReason.SCHEMA),
        (("rejections",), {"no_such_reason": 1}, RejectReason.SCHEMA),
        (("rejections", "replay"), 0, RejectReason.OUT_OF_BOUNDS),  # only reasons that occurred
        (("rejections", "replay"), "2", RejectReason.SCHEMA),
        (("rejections", "replay"), None, RejectReason.SCHEMA),
        (("redeliveries",), None, RejectReason.SCHEMA),
    ],
)
def test_a_bad_value_is_refused_with_its_reason(
    path: tuple[str, ...], value: Any, reason: RejectReason
) -> None:
    assert reason_of(encode(with_at(wire_obj(sign(SUMMARY)), (*BODY, *path), value))) is reason


@pytest.mark.parametrize(
    "path", [("trades",), ("rejections", "replay"), ("price_micro_per_kwh",), ("interval",)]
)
def test_a_float_is_refused(path: tuple[str, ...]) -> None:
    payload = with_raw_at(wire_obj(sign(SUMMARY)), (*BODY, *path), "2.0")
    assert reason_of(payload) is RejectReason.SCHEMA


def test_every_reason_may_be_counted() -> None:
    every = {reason.value: 1 for reason in RejectReason}
    body = SummaryBody(INTERVAL, 1, 1, 1, 0, 0, None, 2, "cd" * 32, every, 0)
    assert decode_message(sign(body).to_wire()).body_as(SummaryBody).rejections == every


def test_the_summary_topic_is_a_retained_market_topic() -> None:
    topics = Topics("m1")
    assert topics.summary == "wattmesh/m1/market/summary"
    assert topics.classify(topics.summary) is None  # no household sends there
    assert topics.agent_of(topics.summary) is None
