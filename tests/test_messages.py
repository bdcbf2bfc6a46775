"""Tests of broker.messages: the signed envelope, its schemas, and every rejection.

Signatures are real (P-256 via ``cryptography``); interop is checked against the
independent pure-Python ``ecdsa`` package, a dev-only dependency (see tests/test_keys.py
for why it is never used at run time).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import ecdsa
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec
from ecdsa.util import sigdecode_der, sigencode_der
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import MessageError, RejectReason
from broker.keys import SigningKey
from broker.messages import (
    DOMAIN_PREFIX,
    MAX_FORECAST_STEPS,
    MAX_MESSAGE_BYTES,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    AnnouncementBody,
    Body,
    ForecastBody,
    OrderBody,
    Phase,
    ReadingBody,
    RejectionBody,
    Side,
    SignedMessage,
    TradeLine,
    TradesBody,
    canonical_bytes,
    decode_message,
    sign_message,
)
from ledger.entries import message_entry

MAX_INT = 2**53 - 1
MARKET = "m1"
AGENT = "h1"
INTERVAL = 1_700_000_100
SEQ = 7
EXPIRES = INTERVAL + 1_800

Path = tuple[str | int, ...]


def _key(secret: int) -> SigningKey:
    return SigningKey.from_private_key(ec.derive_private_key(secret, ec.SECP256R1()))


KEY = _key(0x5A17E3C0FFEE0DDBA11B0A710ADDEDFACADE0123456789ABCDEF0123456789AB)
OTHER = _key(0x0BADC0DE0BADC0DE0BADC0DE0BADC0DE0BADC0DE0BADC0DE0BADC0DE0BADC0DE)

SAMPLES: dict[str, Body] = {
    "reading": ReadingBody(
        meter_time=1_700_000_000,
        import_wh=1_234_567,
        export_wh=89_012,
        pv_wh=345_678,
        power_w=-1_520,
    ),
    "order": OrderBody(side=Side.SELL, quantity_wh=1_500, price_micro_per_kwh=250_000),
    "forecast": ForecastBody(
        start=1_700_000_900,
        interval_s=900,
        demand_wh=(120, 95, 0, 310),
        pv_wh=(0, 40, 260, 15),
        model="prophet",
        fallback=None,
    ),
    "announcement": AnnouncementBody(
        phase=Phase.CLEARED,
        interval_s=900,
        retail_micro_per_kwh=300_000,
        feed_in_micro_per_kwh=80_000,
        price_micro_per_kwh=190_000,
        volume_wh=12_345,
        tree_size=42,
        root="ab" * 32,
    ),
    "trades": TradesBody(
        trades=(
            TradeLine(buyer="h1", seller="h2", quantity_wh=1_000, price_micro_per_kwh=190_000),
            TradeLine(buyer="h3", seller="h2", quantity_wh=500, price_micro_per_kwh=190_000),
        )
    ),
    "rejection": RejectionBody(
        ref="0f" * 32, ref_seq=7, reason=RejectReason.REPLAY, detail="seq 7 is not above 9"
    ),
}


def _sign(
    body: Body, key: SigningKey = KEY, *, agent: str = AGENT, seq: int = SEQ
) -> SignedMessage:
    return sign_message(
        key, body, market=MARKET, interval=INTERVAL, agent=agent, seq=seq, expires=EXPIRES
    )


MESSAGES = {kind: _sign(body) for kind, body in SAMPLES.items()}


# ---------------------------------------------------------------------------- JSON editing


def _obj(message: SignedMessage) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(message.to_wire())
    return obj


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _get(obj: Any, path: Path) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _with(obj: Any, path: Path, value: Any) -> Any:
    """A deep copy of ``obj`` with the value at ``path`` set (or added) to ``value``."""
    out = copy.deepcopy(obj)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _without(obj: Any, path: Path) -> Any:
    out = copy.deepcopy(obj)
    del _get(out, path[:-1])[path[-1]]
    return out


_RAW = "\u0000raw\u0000"


def _with_raw(obj: Any, path: Path, raw: str) -> bytes:
    """Wire bytes with the JSON text ``raw`` at ``path`` (for numbers json.dumps never writes)."""
    text = json.dumps(_with(obj, path, _RAW), separators=(",", ":"))
    marker = json.dumps(_RAW)
    assert text.count(marker) == 1
    return text.replace(marker, raw).encode("utf-8")


def _reason(payload: bytes) -> RejectReason:
    with pytest.raises(MessageError) as info:
        decode_message(payload)
    _assert_rejection_signable(info.value)
    return info.value.reason


def _assert_rejection_signable(exc: MessageError) -> None:
    """The ledger sends ``exc`` back in a signed RejectionBody; that must always work."""
    body = RejectionBody(ref="0" * 64, ref_seq=None, reason=exc.reason, detail=exc.detail[:512])
    echoed = decode_message(_sign(body).to_wire())
    assert echoed.body == body


# ---------------------------------------------------------------------------- round trips


def _assert_round_trip(message: SignedMessage, key: SigningKey) -> SignedMessage:
    wire = message.to_wire()
    decoded = decode_message(wire)
    assert decoded.header == message.header
    assert decoded.body == message.body
    assert type(decoded.body) is type(message.body)
    assert decoded.signature == message.signature
    assert decoded.signed_bytes == message.signed_bytes
    assert decoded.message_id == message.message_id
    assert message.message_id == hashlib.sha256(message.signed_bytes).hexdigest()
    decoded.verify(key.verifying)
    # The signature covers exactly the RFC 8785 bytes of the "signed" object on the wire.
    signed_obj = json.loads(wire)["signed"]
    assert message.signed_bytes == rfc8785.dumps(signed_obj)
    assert signed_obj["domain"] == DOMAIN_PREFIX + message.header.kind
    assert signed_obj["body"] == message.body.to_json()
    return decoded


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip_every_kind(kind: str) -> None:
    message = MESSAGES[kind]
    assert message.header.kind == kind == type(SAMPLES[kind]).KIND
    assert message.header.kid == KEY.kid
    decoded = _assert_round_trip(message, KEY)
    assert decoded.body_as(type(SAMPLES[kind])) is decoded.body


def test_signed_bytes_golden() -> None:
    """The exact bytes an order signs: sorted keys, no whitespace, integers as digits."""
    expected = (
        '{"agent":"h1","body":{"price_micro_per_kwh":250000,"quantity_wh":1500,"side":"sell"},'
        '"domain":"wattmesh/v1/order","expires":1700001900,"interval":1700000100,'
        f'"kid":"{KEY.kid}","market":"m1","seq":7}}'
    ).encode()
    message = MESSAGES["order"]
    assert message.signed_bytes == expected
    sig = base64.b64encode(message.signature)
    assert message.to_wire() == b'{"signed":' + expected + b',"sig":"' + sig + b'"}'


def test_announcement_defaults_round_trip() -> None:
    body = AnnouncementBody(
        phase=Phase.OPEN, interval_s=900, retail_micro_per_kwh=1, feed_in_micro_per_kwh=0
    )
    decoded = _assert_round_trip(_sign(body), KEY)
    assert decoded.body == body
    assert json.loads(decoded.signed_bytes)["body"]["price_micro_per_kwh"] is None


def test_message_id_is_stable() -> None:
    body = SAMPLES["order"]
    first, second = _sign(body), _sign(body)
    assert first.to_wire() == second.to_wire()  # RFC 6979: same key and bytes, same signature
    assert first.message_id == second.message_id
    assert _sign(body, seq=SEQ + 1).message_id != first.message_id
    assert _sign(body, OTHER).message_id != first.message_id


def test_message_id_survives_reserialisation() -> None:
    """Whitespace, key order and \\u escapes on the wire change neither id nor signature."""
    message = _sign(SAMPLES["trades"], agent='häus-1 "ü" ☀')
    obj = _obj(message)
    variants = [
        json.dumps(obj, indent=2, ensure_ascii=True).encode(),
        json.dumps({"sig": obj["sig"], "signed": obj["signed"]}, sort_keys=True).encode(),
        b"  \n" + message.to_wire() + b"\t\r\n ",
    ]
    for payload in variants:
        assert payload != message.to_wire()
        decoded = decode_message(payload)
        assert decoded.message_id == message.message_id
        assert decoded.signed_bytes == message.signed_bytes
        decoded.verify(KEY.verifying)


def test_decode_does_not_verify() -> None:
    tampered = _with(_obj(MESSAGES["order"]), ("signed", "body", "quantity_wh"), 1)
    decoded = decode_message(_encode(tampered))  # decoding succeeds ...
    with pytest.raises(MessageError) as info:  # ... verification does not
        decoded.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def test_body_as_wrong_type() -> None:
    decoded = decode_message(MESSAGES["order"].to_wire())
    assert decoded.body_as(OrderBody).quantity_wh == 1_500
    with pytest.raises(MessageError) as info:
        decoded.body_as(ReadingBody)
    assert info.value.reason is RejectReason.SCHEMA


# Text that JSON and RFC 8785 must carry exactly: quotes, backslashes, controls, non-BMP.
_TEXT = st.text(max_size=40)
_INT = st.integers(min_value=0, max_value=MAX_INT)
_OPT_INT = st.none() | _INT


def _steps() -> st.SearchStrategy[tuple[tuple[int, ...], tuple[int, ...]]]:
    return st.integers(0, 12).flatmap(
        lambda n: st.tuples(
            st.lists(_INT, min_size=n, max_size=n).map(tuple),
            st.lists(_INT, min_size=n, max_size=n).map(tuple),
        )
    )


_BODIES: st.SearchStrategy[Body] = st.one_of(
    st.builds(
        ReadingBody,
        meter_time=_INT,
        import_wh=_INT,
        export_wh=_INT,
        pv_wh=_INT,
        power_w=st.integers(-1_000_000, 1_000_000),
    ),
    st.builds(
        OrderBody,
        side=st.sampled_from(Side),
        quantity_wh=st.integers(0, MAX_QUANTITY_WH),
        price_micro_per_kwh=st.integers(0, MAX_PRICE_MICRO_PER_KWH),
    ),
    st.builds(
        lambda steps, **kw: ForecastBody(demand_wh=steps[0], pv_wh=steps[1], **kw),
        steps=_steps(),
        start=_INT,
        interval_s=st.integers(1, 86_400),
        model=st.text(max_size=64),
        fallback=st.none() | st.text(max_size=256),
    ),
    st.builds(
        AnnouncementBody,
        phase=st.sampled_from(Phase),
        interval_s=st.integers(1, 86_400),
        retail_micro_per_kwh=_INT,
        feed_in_micro_per_kwh=_INT,
        price_micro_per_kwh=_OPT_INT,
        volume_wh=_INT,
        tree_size=_INT,
        root=st.text(max_size=64),
    ),
    st.builds(
        TradesBody,
        trades=st.lists(
            st.builds(
                TradeLine,
                buyer=_TEXT,
                seller=_TEXT,
                quantity_wh=st.integers(0, MAX_QUANTITY_WH),
                price_micro_per_kwh=_INT,
            ),
            max_size=5,
        ).map(tuple),
    ),
    st.builds(
        RejectionBody,
        ref=st.text(max_size=64),
        ref_seq=_OPT_INT,
        reason=st.sampled_from(RejectReason),
        detail=st.text(max_size=512),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    body=_BODIES,
    market=st.text(max_size=128),
    agent=st.text(max_size=128),
    interval=_INT,
    seq=_INT,
    expires=_INT,
)
def test_round_trip_property(
    body: Body, market: str, agent: str, interval: int, seq: int, expires: int
) -> None:
    message = sign_message(
        KEY, body, market=market, interval=interval, agent=agent, seq=seq, expires=expires
    )
    _assert_round_trip(message, KEY)


@settings(max_examples=50, deadline=None)
@given(body=st.sampled_from(sorted(SAMPLES)).map(SAMPLES.__getitem__), agent=_TEXT)
def test_message_interop_with_ecdsa(body: Body, agent: str) -> None:
    """A wattmesh envelope verifies in ``ecdsa``; an ``ecdsa``-signed envelope in wattmesh."""
    message = _sign(body, agent=agent)
    wire_obj = json.loads(message.to_wire())
    their_key = ecdsa.SigningKey.from_pem(KEY.private_pem().decode("ascii"))
    their_vk = ecdsa.VerifyingKey.from_der(KEY.verifying.der())

    # The signed bytes rebuilt from the wire alone, with the rfc8785 package.
    signed_bytes = rfc8785.dumps(wire_obj["signed"])
    signature = base64.b64decode(wire_obj["sig"])
    assert their_vk.verify(
        signature, signed_bytes, hashfunc=hashlib.sha256, sigdecode=sigdecode_der
    )

    their_sig = their_key.sign_deterministic(
        signed_bytes, hashfunc=hashlib.sha256, sigencode=sigencode_der
    )
    assert their_sig == signature  # RFC 6979 in both: byte-identical
    their_wire = _encode(
        {"signed": wire_obj["signed"], "sig": base64.b64encode(their_sig).decode()}
    )
    decode_message(their_wire).verify(KEY.verifying)


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(["reading", "order"]),
    market=st.text(max_size=128),
    agent=st.text(max_size=128),
)
def test_ledger_message_entry_is_canonical(kind: str, market: str, agent: str) -> None:
    """ledger.entries.message_entry concatenates bytes; they must be RFC 8785 all the same."""
    message = sign_message(
        KEY, SAMPLES[kind], market=market, interval=INTERVAL, agent=agent, seq=SEQ, expires=1
    )
    data = message_entry(message).data
    assert data == rfc8785.dumps(json.loads(data))
    assert json.loads(data) == {
        "kind": kind,
        "sig": base64.b64encode(message.signature).decode(),
        "signed": json.loads(message.signed_bytes),
    }


# ---------------------------------------------------------------------------- rejections


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
    assert _reason(payload) is RejectReason.MALFORMED_JSON


def test_non_utf8() -> None:
    wire = MESSAGES["order"].to_wire()
    assert b'"h1"' in wire
    for bad in (b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
        assert _reason(wire.replace(b'"h1"', b'"h' + bad + b'"')) is RejectReason.MALFORMED_JSON
    assert _reason(b"\xff" + wire) is RejectReason.MALFORMED_JSON
    assert _reason(b"\xef\xbb\xbf" + wire) is RejectReason.MALFORMED_JSON  # BOM
    assert _reason(wire.decode().encode("utf-16")) is RejectReason.MALFORMED_JSON


def test_lone_surrogate_escapes() -> None:
    """JSON may spell a lone surrogate as \\ud800; it is not text and cannot be signed."""
    obj = _obj(MESSAGES["order"])
    for path in [("signed", "agent"), ("signed", "market"), ("sig",), ("signed", "domain")]:
        payload = _with_raw(obj, path, '"h\\ud800"')
        assert _reason(payload) is RejectReason.SCHEMA, path
    trades = _obj(MESSAGES["trades"])
    payload = _with_raw(trades, ("signed", "body", "trades", 0, "buyer"), '"\\udfff"')
    assert _reason(payload) is RejectReason.SCHEMA
    # As an unknown field's name, the surrogate must not leak into the rejection detail
    # (_reason checks that the detail can be signed back to the sender).
    payload = _encode(obj).replace(b'"body":{', b'"body":{"\\ud800":1,', 1)
    assert _reason(payload) is RejectReason.SCHEMA
    # A correctly paired surrogate escape is ordinary text.
    paired = _with_raw(obj, ("signed", "agent"), '"\\ud83d\\ude00"')
    assert decode_message(paired).header.agent == "\U0001f600"


_FLOAT_CASES: list[tuple[str, Path, str]] = [
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
def test_float_anywhere_is_schema(kind: str, path: Path, raw: str) -> None:
    assert _reason(_with_raw(_obj(MESSAGES[kind]), path, raw)) is RejectReason.SCHEMA


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "path",
    [("signed", "body", "quantity_wh"), ("signed", "seq"), ("sig",), ("signed", "body", "x")],
)
def test_nan_and_infinity(raw: str, path: Path) -> None:
    assert _reason(_with_raw(_obj(MESSAGES["order"]), path, raw)) is RejectReason.SCHEMA


def _object_paths(obj: Any, path: Path = ()) -> list[Path]:
    """Paths of every JSON object inside ``obj``, outermost first."""
    found: list[Path] = []
    if isinstance(obj, dict):
        found.append(path)
        for key, value in obj.items():
            found.extend(_object_paths(value, (*path, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.extend(_object_paths(value, (*path, index)))
    return found


_FIELD_CASES: list[tuple[str, Path]] = [
    (kind, (*path, key))
    for kind in sorted(MESSAGES)
    for path in _object_paths(_obj(MESSAGES[kind]))
    for key in _get(_obj(MESSAGES[kind]), path)
]


@pytest.mark.parametrize(("kind", "path"), _FIELD_CASES)
def test_missing_field(kind: str, path: Path) -> None:
    assert _reason(_encode(_without(_obj(MESSAGES[kind]), path))) is RejectReason.SCHEMA


@pytest.mark.parametrize(
    ("kind", "path"),
    [(kind, path) for kind in sorted(MESSAGES) for path in _object_paths(_obj(MESSAGES[kind]))],
)
@pytest.mark.parametrize("value", [None, 0, "x"])
def test_extra_field(kind: str, path: Path, value: Any) -> None:
    payload = _encode(_with(_obj(MESSAGES[kind]), (*path, "extra"), value))
    assert _reason(payload) is RejectReason.SCHEMA


def test_every_level_is_covered() -> None:
    """The generated field cases reach the envelope, header, every body and a trade line."""
    levels = {(kind, path[:-1]) for kind, path in _FIELD_CASES}
    for kind in SAMPLES:
        assert (kind, ()) in levels
        assert (kind, ("signed",)) in levels
        assert (kind, ("signed", "body")) in levels
    assert ("trades", ("signed", "body", "trades", 0)) in levels


_INT_PATHS: list[tuple[str, Path]] = [
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
def test_wrong_type_where_int_expected(kind: str, path: Path, value: Any) -> None:
    """Booleans are not integers here, though Python's bool is an int subclass."""
    assert _reason(_encode(_with(_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


_STR_PATHS: list[tuple[str, Path]] = [
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
def test_wrong_type_where_string_expected(kind: str, path: Path, value: Any) -> None:
    assert _reason(_encode(_with(_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


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
def test_wrong_container_type(kind: str, path: Path, value: Any) -> None:
    assert _reason(_encode(_with(_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


@pytest.mark.parametrize("payload", [b"[]", b"null", b"1", b'"signed"', b"true", b"{}"])
def test_envelope_must_be_an_object_with_two_fields(payload: bytes) -> None:
    assert _reason(payload) is RejectReason.SCHEMA


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
def test_schema_values(kind: str, path: Path, value: Any) -> None:
    assert _reason(_encode(_with(_obj(MESSAGES[kind]), path, value))) is RejectReason.SCHEMA


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
def test_boundary_values_decode(kind: str, path: Path, value: Any) -> None:
    decoded = decode_message(_encode(_with(_obj(MESSAGES[kind]), path, value)))
    assert _get(json.loads(decoded.signed_bytes), path[1:]) == value


def test_forecast_step_limit() -> None:
    obj = _obj(MESSAGES["forecast"])
    for steps, ok in ((MAX_FORECAST_STEPS, True), (MAX_FORECAST_STEPS + 1, False)):
        body = {**obj["signed"]["body"], "demand_wh": [1] * steps, "pv_wh": [2] * steps}
        payload = _encode(_with(obj, ("signed", "body"), body))
        if ok:
            decoded = decode_message(payload).body_as(ForecastBody)
            assert len(decoded.demand_wh) == len(decoded.pv_wh) == steps
        else:
            assert _reason(payload) is RejectReason.SCHEMA


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
def test_out_of_bounds(kind: str, path: Path, value: int) -> None:
    assert _reason(_encode(_with(_obj(MESSAGES[kind]), path, value))) is RejectReason.OUT_OF_BOUNDS


@pytest.mark.parametrize("digits", [33, 4_301, 100_000])
def test_integer_with_too_many_digits(digits: int) -> None:
    """Python refuses int() of over 4300 digits with ValueError; that must not escape."""
    obj = _obj(MESSAGES["order"])
    for path in [("signed", "body", "quantity_wh"), ("signed", "body", "extra"), ("sig",)]:
        payload = _with_raw(obj, path, "9" * digits)
        assert _reason(payload) is RejectReason.OUT_OF_BOUNDS
        assert _reason(_with_raw(obj, path, "-" + "9" * digits)) is RejectReason.OUT_OF_BOUNDS


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
    payload = _encode(_with(_obj(MESSAGES["order"]), ("signed", "domain"), domain))
    assert _reason(payload) is RejectReason.SCHEMA


@pytest.mark.parametrize("sig", ["not base64!", "abc", "ab=c", "YWJj\n", " YWJj", "YW Jj", "Y"])
def test_bad_base64_signature(sig: str) -> None:
    payload = _encode(_with(_obj(MESSAGES["order"]), ("sig",), sig))
    assert _reason(payload) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "sig", ["", "AAAA", base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()]
)
def test_base64_but_not_a_signature(sig: str) -> None:
    decoded = decode_message(_encode(_with(_obj(MESSAGES["order"]), ("sig",), sig)))
    with pytest.raises(MessageError) as info:
        decoded.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def test_signed_by_another_key_names_another_kid() -> None:
    message = decode_message(_sign(SAMPLES["order"], OTHER).to_wire())
    message.verify(OTHER.verifying)
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.KEY_MISMATCH


def test_forged_kid_with_another_keys_signature() -> None:
    """OTHER signs a message that claims KEY's kid: the kid matches, the signature does not."""
    signed = _obj(MESSAGES["order"])["signed"]
    assert signed["kid"] == KEY.kid
    forged_sig = OTHER.sign(canonical_bytes(signed))
    payload = _encode({"signed": signed, "sig": base64.b64encode(forged_sig).decode()})
    message = decode_message(payload)
    assert message.header.kid == KEY.kid
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE
    with pytest.raises(MessageError) as info:
        message.verify(OTHER.verifying)
    assert info.value.reason is RejectReason.KEY_MISMATCH


def test_signature_transplanted_from_another_message() -> None:
    donor = _sign(SAMPLES["order"], seq=SEQ + 1)
    obj = _with(_obj(MESSAGES["order"]), ("sig",), base64.b64encode(donor.signature).decode())
    message = decode_message(_encode(obj))
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


_TAMPER_CASES: list[tuple[str, Path, Callable[[Any], Any]]] = [
    ("order", ("signed", "market"), lambda v: v + "x"),
    ("order", ("signed", "interval"), lambda v: v + 900),
    ("order", ("signed", "agent"), lambda v: "h2"),
    ("order", ("signed", "seq"), lambda v: v + 1),
    ("order", ("signed", "expires"), lambda v: v + 1),
    ("order", ("signed", "body", "side"), lambda v: "buy"),
    ("order", ("signed", "body", "quantity_wh"), lambda v: v - 1),
    ("order", ("signed", "body", "price_micro_per_kwh"), lambda v: v + 1),
    ("reading", ("signed", "body", "meter_time"), lambda v: v + 1),
    ("reading", ("signed", "body", "import_wh"), lambda v: v + 1),
    ("reading", ("signed", "body", "export_wh"), lambda v: v - 1),
    ("reading", ("signed", "body", "pv_wh"), lambda v: v + 1),
    ("reading", ("signed", "body", "power_w"), lambda v: -v),
    ("forecast", ("signed", "body", "start"), lambda v: v + 900),
    ("forecast", ("signed", "body", "interval_s"), lambda v: 3_600),
    ("forecast", ("signed", "body", "demand_wh"), lambda v: [v[1], v[0], *v[2:]]),
    ("forecast", ("signed", "body", "pv_wh", 2), lambda v: v + 1),
    ("forecast", ("signed", "body", "model"), lambda v: "naive"),
    ("forecast", ("signed", "body", "fallback"), lambda v: "naive"),
    ("announcement", ("signed", "body", "phase"), lambda v: "closed"),
    ("announcement", ("signed", "body", "interval_s"), lambda v: 1_800),
    ("announcement", ("signed", "body", "retail_micro_per_kwh"), lambda v: v + 1),
    ("announcement", ("signed", "body", "feed_in_micro_per_kwh"), lambda v: v + 1),
    ("announcement", ("signed", "body", "price_micro_per_kwh"), lambda v: None),
    ("announcement", ("signed", "body", "volume_wh"), lambda v: 0),
    ("announcement", ("signed", "body", "tree_size"), lambda v: v + 1),
    ("announcement", ("signed", "body", "root"), lambda v: "cd" + v[2:]),
    ("trades", ("signed", "body", "trades"), lambda v: v[::-1]),
    ("trades", ("signed", "body", "trades"), lambda v: v[:1]),
    ("trades", ("signed", "body", "trades", 0, "buyer"), lambda v: "h4"),
    ("trades", ("signed", "body", "trades", 0, "seller"), lambda v: "h4"),
    ("trades", ("signed", "body", "trades", 1, "quantity_wh"), lambda v: v * 2),
    ("trades", ("signed", "body", "trades", 1, "price_micro_per_kwh"), lambda v: 1),
    ("rejection", ("signed", "body", "ref"), lambda v: "1f" + v[2:]),
    ("rejection", ("signed", "body", "ref_seq"), lambda v: None),
    ("rejection", ("signed", "body", "reason"), lambda v: "late"),
    ("rejection", ("signed", "body", "detail"), lambda v: v + "."),
]


@pytest.mark.parametrize(
    ("kind", "path", "change"),
    _TAMPER_CASES,
    ids=[f"{kind}-{'.'.join(map(str, path[1:]))}" for kind, path, _ in _TAMPER_CASES],
)
def test_tampered_field_fails_verification(
    kind: str, path: Path, change: Callable[[Any], Any]
) -> None:
    original = MESSAGES[kind]
    obj = _obj(original)
    tampered = decode_message(_encode(_with(obj, path, change(_get(obj, path)))))
    assert tampered.signed_bytes != original.signed_bytes
    assert tampered.signature == original.signature
    with pytest.raises(MessageError) as info:
        tampered.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def _field_names(obj: Any) -> set[str]:
    """Every object key anywhere inside ``obj``."""
    if isinstance(obj, dict):
        return set(obj).union(*(_field_names(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_field_names(v) for v in obj))
    return set()


def test_tamper_cases_cover_every_signed_field() -> None:
    """Each kind's body fields, and every header field but domain and kid, is tampered with.

    (A changed kid is key_mismatch, a changed domain a schema error: both tested above.)
    """
    tampered = {
        (kind, name)
        for kind, path, _ in _TAMPER_CASES
        for name in path[1:]
        if isinstance(name, str)
    }
    for kind in SAMPLES:
        for name in _field_names(_obj(MESSAGES[kind])["signed"]["body"]):
            assert (kind, name) in tampered, (kind, name)
    header = set(_obj(MESSAGES["order"])["signed"]) - {"domain", "kid", "body"}
    assert {("order", name) for name in header} <= tampered


def test_oversized_payload() -> None:
    wire = MESSAGES["order"].to_wire()
    exact = wire + b" " * (MAX_MESSAGE_BYTES - len(wire))
    assert len(exact) == MAX_MESSAGE_BYTES
    decode_message(exact).verify(KEY.verifying)
    assert _reason(exact + b" ") is RejectReason.OUT_OF_BOUNDS
    assert _reason(b"\xff" * (MAX_MESSAGE_BYTES + 1)) is RejectReason.OUT_OF_BOUNDS


def test_oversized_forecast_is_out_of_bounds_before_parsing() -> None:
    obj = _with(_obj(MESSAGES["forecast"]), ("signed", "body", "demand_wh"), [1] * 600_000)
    payload = _encode(obj)
    assert len(payload) > MAX_MESSAGE_BYTES
    assert _reason(payload) is RejectReason.OUT_OF_BOUNDS


# ---------------------------------------------------------------------------- fuzzing


_VERIFY_FAILURES = {RejectReason.BAD_SIGNATURE, RejectReason.KEY_MISMATCH}


def _check_mutant(payload: bytes, original: SignedMessage) -> None:
    """Either a MessageError, or a decoded message that verifies iff nothing signed changed."""
    try:
        decoded = decode_message(payload)
    except MessageError as exc:
        _assert_rejection_signable(exc)
        return
    unchanged = (
        decoded.signed_bytes == original.signed_bytes and decoded.signature == original.signature
    )
    if unchanged:
        decoded.verify(KEY.verifying)
        assert decoded.header == original.header
        assert decoded.body == original.body
        assert decoded.message_id == original.message_id
    else:
        with pytest.raises(MessageError) as info:
            decoded.verify(KEY.verifying)
        assert info.value.reason in _VERIFY_FAILURES


_ORIGINALS = st.sampled_from(sorted(MESSAGES)).map(MESSAGES.__getitem__)


@st.composite
def _byte_mutants(draw: st.DrawFn) -> tuple[bytes, SignedMessage]:
    original = draw(_ORIGINALS)
    data = bytearray(original.to_wire())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "swap"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            other = draw(st.integers(0, len(data) - 1))
            data[at], data[other] = data[other], data[at]
    return bytes(data), original


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=12),  # includes lone surrogates
    st.text(max_size=300),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _all_paths(obj: Any, path: Path = ()) -> list[Path]:
    found: list[Path] = [path] if path else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.extend(_all_paths(value, (*path, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.extend(_all_paths(value, (*path, index)))
    return found


def _nearby(draw: st.DrawFn, value: Any) -> Any:
    """A value like ``value``: often the same, often a small change of the same type."""
    if isinstance(value, bool) or value is None:
        return draw(_JSON_LEAVES)
    if isinstance(value, int):
        return value + draw(st.integers(-2, 2))
    if isinstance(value, str):
        return draw(st.sampled_from([value, value + "x", value[:-1], value.upper()]))
    return copy.deepcopy(value)


@st.composite
def _json_mutants(draw: st.DrawFn) -> tuple[bytes, SignedMessage]:
    original = draw(_ORIGINALS)
    obj: Any = _obj(original)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_all_paths(obj)))
        op = draw(st.sampled_from(["replace", "nearby", "delete", "add"]))
        parent = _get(obj, path[:-1])
        if op == "replace":
            obj = _with(obj, path, draw(_JSON_VALUES))
        elif op == "nearby":
            obj = _with(obj, path, _nearby(draw, _get(obj, path)))
        elif op == "delete":
            obj = _without(obj, path)
        elif isinstance(parent, dict):
            obj = _with(obj, (*path[:-1], draw(st.text(max_size=8))), draw(_JSON_VALUES))
        else:
            obj = _with(obj, path[:-1], [*parent, draw(_JSON_VALUES)])
        if not isinstance(obj, dict) or not obj:
            break
    ascii_only = draw(st.booleans())
    text = json.dumps(obj, ensure_ascii=ascii_only, sort_keys=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass"), original


_FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(payload=st.binary(max_size=512) | _JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_fuzz_random_payloads(payload: bytes) -> None:
    _check_mutant(payload, MESSAGES["order"])


@_FUZZ
@given(mutant=_byte_mutants())
def test_fuzz_byte_mutations(mutant: tuple[bytes, SignedMessage]) -> None:
    _check_mutant(*mutant)


@_FUZZ
@given(mutant=_json_mutants())
def test_fuzz_json_mutations(mutant: tuple[bytes, SignedMessage]) -> None:
    _check_mutant(*mutant)
