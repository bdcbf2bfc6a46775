"""broker.messages rejections at decoding: malformed JSON, schema errors, out-of-bounds values.

Every rejection is also checked to be signable back to its sender
(``messagekit.reason_of``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.messagekit import (
    KEY,
    MAX_INT,
    MESSAGES,
    SAMPLES,
    JsonPath,
    encode,
    get_at,
    reason_of,
    wire_obj,
    with_at,
    with_raw_at,
    without_at,
)
from wattmesh.broker.errors import RejectReason
from wattmesh.broker.messages import (
    MAX_FORECAST_STEPS,
    MAX_MESSAGE_BYTES,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    ForecastBody,
    decode_message,
)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" ",
        b"{",
        b"}",
        b"not json",
        b'{"signed":}',
        b"{'signed': 1}",
        b'{"signed":{},"sig":""',
        b'{"signed":{},"sig":""}x',
        b'{"signed":{},"sig":""}{}',
        b'{"signed":{},"sig":"",}',
        b'{"signed":{},"sig":"\x01"}',  # raw control character inside a string
        b'{"a":01}',
        b'{"a":+1}',
        b'{"a":.5}',
        b'{"a":0x10}',
        b'{"a":"\\x41"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_malformed_json(payload: bytes) -> None:
    assert reason_of(payload) is RejectReason.MALFORMED_JSON


def test_non_utf8() -> None:
    wire = MESSAGES["order"].to_wire()
    assert b'"h1"' in wire
    for bad in (b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
        assert reason_of(wire.replace(b'"h1"', b'"h' + bad + b'"')) is RejectReason.MALFORMED_JSON
    assert reason_of(b"\xff" + wire) is RejectReason.MALFORMED_JSON
    assert reason_of(b"\xef\xbb\xbf" + wire) is RejectReason.MALFORMED_JSON  # BOM
    assert reason_of(wire.decode().encode("utf-16")) is RejectReason.MALFORMED_JSON


def test_lone_surrogate_escapes() -> None:
    """JSON may spell a lone surrogate as \\ud800; it is not text and cannot be signed."""
    obj = wire_obj(MESSAGES["order"])
    for path in [("signed", "agent"), ("signed", "market"), ("sig",), ("signed", "domain")]:
        payload = with_raw_at(obj, path, '"h\\ud800"')
        assert reason_of(payload) is RejectReason.SCHEMA, path
    trades = wire_obj(MESSAGES["trades"])
    payload = with_raw_at(trades, ("signed", "body", "trades", 0, "buyer"), '"\\udfff"')
    assert reason_of(payload) is RejectReason.SCHEMA
    # As an unknown field's name, the surrogate must not leak into the rejection detail
    # (reason_of checks that the detail can be signed back to the sender).
    payload = encode(obj).replace(b'"body":{', b'"body":{"\\ud800":1,', 1)
    assert reason_of(payload) is RejectReason.SCHEMA
    # A correctly paired surrogate escape is ordinary text.
    paired = with_raw_at(obj, ("signed", "agent"), '"\\ud83d\\ude00"')
    assert decode_message(paired).header.agent == "\U0001f600"


_FLOAT_CASES: list[tuple[str, JsonPath, str]] = [
    ("order", ("signed", "body", "quantity_wh"), "1.5"),
    ("order", ("signed", "body", "quantity_wh"), "1e3"),
    ("order", ("signed", "body", "quantity_wh"), "1E3"),
    ("order", ("signed", "body", "quantity_wh"), "1000.0"),
    ("order", ("signed", "body", "quantity_wh"), "1e-3"),
    ("order", ("signed", "body", "price_micro_per_kwh"), "-0.0"),
    ("order", ("signed", "seq"), "7.0"),
    ("order", ("signed", "interval"), "1.7e9"),
    ("order", ("signed", "expires"), "1E+10"),
    ("reading", ("signed", "body", "power_w"), "-1.5"),
    ("forecast", ("signed", "body", "demand_wh", 2), "0.5"),
    ("announcement", ("signed", "body", "price_micro_per_kwh"), "1.9e5"),
    ("trades", ("signed", "body", "trades", 1, "quantity_wh"), "5e2"),
    ("rejection", ("signed", "body", "ref_seq"), "7.0"),
    ("order", ("sig",), "1.5"),
    ("order", ("signed", "body", "extra"), "1.5"),  # even where no number belongs
    ("order", ("extra",), "2.5"),
]


@pytest.mark.parametrize(("kind", "path", "raw"), _FLOAT_CASES)
def test_float_anywhere_is_schema(kind: str, path: JsonPath, raw: str) -> None:
    assert reason_of(with_raw_at(wire_obj(MESSAGES[kind]), path, raw)) is RejectReason.SCHEMA


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "path",
    [("signed", "body", "quantity_wh"), ("signed", "seq"), ("sig",), ("signed", "body", "x")],
)
def test_nan_and_infinity(raw: str, path: JsonPath) -> None:
    assert reason_of(with_raw_at(wire_obj(MESSAGES["order"]), path, raw)) is RejectReason.SCHEMA


def _object_paths(obj: Any, path: JsonPath = ()) -> list[JsonPath]:
    """Paths of every JSON object inside ``obj``, outermost first."""
    found: list[JsonPath] = []
    if isinstance(obj, dict):
        found.append(path)
        for key, value in obj.items():
            found.extend(_object_paths(value, (*path, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.extend(_object_paths(value, (*path, index)))
    return found


_FIELD_CASES: list[tuple[str, JsonPath]] = [
    (kind, (*path, key))
    for kind in sorted(MESSAGES)
    for path in _object_paths(wire_obj(MESSAGES[kind]))
    for key in get_at(wire_obj(MESSAGES[kind]), path)
]


@pytest.mark.parametrize(("kind", "path"), _FIELD_CASES)
def test_missing_field(kind: str, path: JsonPath) -> None:
    assert reason_of(encode(without_at(wire_obj(MESSAGES[kind]), path))) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path"),
    [(kind, path) for kind in sorted(MESSAGES) for path in _object_paths(wire_obj(MESSAGES[kind]))],
)
@pytest.mark.parametrize("value", [None, 0, "x"])
def test_extra_field(kind: str, path: JsonPath, value: Any) -> None:
    payload = encode(with_at(wire_obj(MESSAGES[kind]), (*path, "extra"), value))
    assert reason_of(payload) is RejectReason.SCHEMA


def test_every_level_is_covered() -> None:
    """The generated field cases reach the envelope, header, every body and a trade line."""
    levels = {(kind, path[:-1]) for kind, path in _FIELD_CASES}
    for kind in SAMPLES:
        assert (kind, ()) in levels
        assert (kind, ("signed",)) in levels
        assert (kind, ("signed", "body")) in levels
    assert ("trades", ("signed", "body", "trades", 0)) in levels


_INT_PATHS: list[tuple[str, JsonPath]] = [
    ("order", ("signed", "interval")),
    ("order", ("signed", "seq")),
    ("order", ("signed", "expires")),
    ("order", ("signed", "body", "quantity_wh")),
    ("order", ("signed", "body", "price_micro_per_kwh")),
    ("reading", ("signed", "body", "meter_time")),
    ("reading", ("signed", "body", "import_wh")),
    ("reading", ("signed", "body", "export_wh")),
    ("reading", ("signed", "body", "pv_wh")),
    ("reading", ("signed", "body", "power_w")),
    ("forecast", ("signed", "body", "start")),
    ("forecast", ("signed", "body", "interval_s")),
    ("forecast", ("signed", "body", "demand_wh", 0)),
    ("forecast", ("signed", "body", "pv_wh", 3)),
    ("announcement", ("signed", "body", "interval_s")),
    ("announcement", ("signed", "body", "retail_micro_per_kwh")),
    ("announcement", ("signed", "body", "feed_in_micro_per_kwh")),
    ("announcement", ("signed", "body", "price_micro_per_kwh")),
    ("announcement", ("signed", "body", "volume_wh")),
    ("announcement", ("signed", "body", "tree_size")),
    ("trades", ("signed", "body", "trades", 0, "quantity_wh")),
    ("trades", ("signed", "body", "trades", 1, "price_micro_per_kwh")),
    ("rejection", ("signed", "body", "ref_seq")),
]


_OPTIONAL_INTS = {
    ("announcement", ("signed", "body", "price_micro_per_kwh")),
    ("rejection", ("signed", "body", "ref_seq")),
}


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        (kind, path, value)
        for kind, path in _INT_PATHS
        for value in [True, False, "1", [1], {"n": 1}, None]
        if value is not None or (kind, path) not in _OPTIONAL_INTS
    ],
)
def test_wrong_type_where_int_expected(kind: str, path: JsonPath, value: Any) -> None:
    """Booleans are not integers here, though Python's bool is an int subclass."""
    assert reason_of(encode(with_at(wire_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


_STR_PATHS: list[tuple[str, JsonPath]] = [
    ("order", ("signed", "domain")),
    ("order", ("signed", "market")),
    ("order", ("signed", "agent")),
    ("order", ("signed", "kid")),
    ("order", ("signed", "body", "side")),
    ("order", ("sig",)),
    ("forecast", ("signed", "body", "model")),
    ("announcement", ("signed", "body", "phase")),
    ("announcement", ("signed", "body", "root")),
    ("trades", ("signed", "body", "trades", 0, "buyer")),
    ("trades", ("signed", "body", "trades", 1, "seller")),
    ("rejection", ("signed", "body", "ref")),
    ("rejection", ("signed", "body", "reason")),
    ("rejection", ("signed", "body", "detail")),
]


@pytest.mark.parametrize(("kind", "path"), _STR_PATHS)
@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": "b"}])
def test_wrong_type_where_string_expected(kind: str, path: JsonPath, value: Any) -> None:
    assert reason_of(encode(with_at(wire_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("forecast", ("signed", "body", "fallback"), 1),
        ("forecast", ("signed", "body", "demand_wh"), 5),
        ("forecast", ("signed", "body", "demand_wh"), None),
        ("forecast", ("signed", "body", "pv_wh"), {"0": 1}),
        ("trades", ("signed", "body", "trades"), {"0": 1}),
        ("trades", ("signed", "body", "trades"), None),
        ("trades", ("signed", "body", "trades", 0), [1]),
        ("trades", ("signed", "body", "trades", 0), None),
        ("order", ("signed", "body"), []),
        ("order", ("signed", "body"), None),
        ("order", ("signed",), "x"),
        ("order", ("signed",), []),
    ],
)
def test_wrong_container_type(kind: str, path: JsonPath, value: Any) -> None:
    assert reason_of(encode(with_at(wire_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


@pytest.mark.parametrize("payload", [b"[]", b"null", b"1", b'"signed"', b"true", b"{}"])
def test_envelope_must_be_an_object_with_two_fields(payload: bytes) -> None:
    assert reason_of(payload) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("order", ("signed", "body", "side"), "hold"),
        ("order", ("signed", "body", "side"), "BUY"),
        ("announcement", ("signed", "body", "phase"), "opening"),
        ("rejection", ("signed", "body", "reason"), "because"),
        ("forecast", ("signed", "body", "pv_wh"), [0, 40, 260]),  # lengths differ
        ("order", ("signed", "kid"), "a" * 65),
        ("order", ("signed", "market"), "m" * 129),
        ("order", ("signed", "agent"), "a" * 129),
        ("order", ("sig",), "A" * 204),
        ("forecast", ("signed", "body", "model"), "m" * 65),
        ("forecast", ("signed", "body", "fallback"), "f" * 257),
        ("announcement", ("signed", "body", "root"), "0" * 65),
        ("trades", ("signed", "body", "trades", 0, "buyer"), "b" * 129),
        ("rejection", ("signed", "body", "ref"), "r" * 65),
        ("rejection", ("signed", "body", "detail"), "d" * 513),
    ],
)
def test_schema_values(kind: str, path: JsonPath, value: Any) -> None:
    assert reason_of(encode(with_at(wire_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("order", ("signed", "kid"), "a" * 64),
        ("order", ("signed", "market"), "m" * 128),
        ("order", ("signed", "agent"), ""),
        ("forecast", ("signed", "body", "model"), "m" * 64),
        ("forecast", ("signed", "body", "fallback"), "f" * 256),
        ("rejection", ("signed", "body", "detail"), "d" * 512),
        ("order", ("signed", "body", "quantity_wh"), MAX_QUANTITY_WH),
        ("order", ("signed", "body", "quantity_wh"), 0),
        ("order", ("signed", "body", "price_micro_per_kwh"), MAX_PRICE_MICRO_PER_KWH),
        ("order", ("signed", "seq"), MAX_INT),
        ("reading", ("signed", "body", "power_w"), -1_000_000),
        ("reading", ("signed", "body", "power_w"), 1_000_000),
        ("forecast", ("signed", "body", "interval_s"), 1),
        ("forecast", ("signed", "body", "interval_s"), 86_400),
        ("announcement", ("signed", "body", "price_micro_per_kwh"), None),
        ("trades", ("signed", "body", "trades"), []),
        ("rejection", ("signed", "body", "ref_seq"), None),
    ],
)
def test_boundary_values_decode(kind: str, path: JsonPath, value: Any) -> None:
    decoded = decode_message(encode(with_at(wire_obj(MESSAGES[kind]), path, value)))
    assert get_at(json.loads(decoded.signed_bytes), path[1:]) == value


def test_forecast_step_limit() -> None:
    obj = wire_obj(MESSAGES["forecast"])
    for steps, ok in ((MAX_FORECAST_STEPS, True), (MAX_FORECAST_STEPS + 1, False)):
        body = {**obj["signed"]["body"]}
        for target, value in (("demand", 1), ("pv", 2)):
            for name in (f"{target}_wh", f"{target}_p10_wh", f"{target}_p90_wh"):
                body[name] = [value] * steps
        payload = encode(with_at(obj, ("signed", "body"), body))
        if ok:
            decoded = decode_message(payload).body_as(ForecastBody)
            assert len(decoded.demand_wh) == len(decoded.pv_wh) == steps
        else:
            assert reason_of(payload) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("order", ("signed", "body", "quantity_wh"), -1),
        ("order", ("signed", "body", "quantity_wh"), MAX_QUANTITY_WH + 1),
        ("order", ("signed", "body", "quantity_wh"), 10**30),
        ("order", ("signed", "body", "price_micro_per_kwh"), -1),
        ("order", ("signed", "body", "price_micro_per_kwh"), MAX_PRICE_MICRO_PER_KWH + 1),
        ("order", ("signed", "seq"), -1),
        ("order", ("signed", "seq"), MAX_INT + 1),
        ("order", ("signed", "interval"), -900),
        ("order", ("signed", "expires"), 2**63),
        ("reading", ("signed", "body", "import_wh"), -5),
        ("reading", ("signed", "body", "power_w"), -1_000_001),
        ("reading", ("signed", "body", "power_w"), 1_000_001),
        ("forecast", ("signed", "body", "interval_s"), 0),
        ("forecast", ("signed", "body", "interval_s"), 86_401),
        ("forecast", ("signed", "body", "demand_wh", 1), -1),
        ("forecast", ("signed", "body", "pv_wh", 0), MAX_INT + 1),
        ("announcement", ("signed", "body", "price_micro_per_kwh"), -1),
        ("announcement", ("signed", "body", "tree_size"), -1),
        ("trades", ("signed", "body", "trades", 0, "quantity_wh"), MAX_QUANTITY_WH + 1),
        ("trades", ("signed", "body", "trades", 1, "price_micro_per_kwh"), -1),
        ("rejection", ("signed", "body", "ref_seq"), -1),
    ],
)
def test_out_of_bounds(kind: str, path: JsonPath, value: int) -> None:
    assert (
        reason_of(encode(with_at(wire_obj(MESSAGES[kind]), path, value)))
        is RejectReason.OUT_OF_BOUNDS
    )


@pytest.mark.parametrize("digits", [33, 4_301, 100_000])
def test_integer_with_too_many_digits(digits: int) -> None:
    """Python refuses int() of over 4300 digits with ValueError; that must not escape."""
    obj = wire_obj(MESSAGES["order"])
    for path in [("signed", "body", "quantity_wh"), ("signed", "body", "extra"), ("sig",)]:
        payload = with_raw_at(obj, path, "9" * digits)
        assert reason_of(payload) is RejectReason.OUT_OF_BOUNDS
        assert reason_of(with_raw_at(obj, path, "-" + "9" * digits)) is RejectReason.OUT_OF_BOUNDS


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "order",
        "wattmesh/v1",
        "wattmesh/v1/",
        "wattmesh/v2/order",
        "wattmesh/v0/order",
        "Wattmesh/v1/order",
        "other/v1/order",
        "wattmesh/v1/Order",
        "wattmesh/v1/order ",
        "wattmesh/v1/orders",
        "wattmesh/v1/bogus",
        "wattmesh/v1/order/x",
        "wattmesh/v1/reading",  # a known kind, but the body is an order's
    ],
)
def test_unknown_domain_or_kind(domain: str) -> None:
    payload = encode(with_at(wire_obj(MESSAGES["order"]), ("signed", "domain"), domain))
    assert reason_of(payload) is RejectReason.SCHEMA


def test_oversized_payload() -> None:
    wire = MESSAGES["order"].to_wire()
    exact = wire + b" " * (MAX_MESSAGE_BYTES - len(wire))
    assert len(exact) == MAX_MESSAGE_BYTES
    decode_message(exact).verify(KEY.verifying)
    assert reason_of(exact + b" ") is RejectReason.OUT_OF_BOUNDS
    assert reason_of(b"\xff" * (MAX_MESSAGE_BYTES + 1)) is RejectReason.OUT_OF_BOUNDS


def test_oversized_forecast_is_out_of_bounds_before_parsing() -> None:
    obj = with_at(wire_obj(MESSAGES["forecast"]), ("signed", "body", "demand_wh"), [1] * 600_000)
    payload = encode(obj)
    assert len(payload) > MAX_MESSAGE_BYTES
    assert reason_of(payload) is RejectReason.OUT_OF_BOUNDS
