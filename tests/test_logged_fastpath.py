"""The verifier's glance at a plain logged message (``ledger._logged.plain_header``)
decides as the full decoding it skips: whenever it gives a header, ``decode_logged``
accepts the same bytes with that header.

Hypothesis feeds both signed bytes near the plain ones: values at and beyond the
schema's bounds, bools, names with quotes, backslashes, control, non-ASCII and
surrogate characters at and beyond their length limits, missing and extra keys, a
wrong domain, and bytes that are not canonical (spaces, other key orders, escapes,
leading zeros, ``-0``, exponents) or not JSON at all; a fixed list holds the edges
(each bound and character class, on both sides). Agents' own messages are plain.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from wattmesh.broker._validate import MAX_INT
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    DOMAIN_PREFIX,
    MAX_POWER_W,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    OrderBody,
    ReadingBody,
    Side,
    sign_message,
)
from wattmesh.ledger._logged import decode_logged, plain_header

_KEY = SigningKey.generate()
_SIGNATURE = _KEY.sign(b"any")  # decoding does not check the signature

_BOUNDS = st.sampled_from(
    [
        *(MAX_INT, MAX_INT + 1, -MAX_INT, 10**15 - 1, 10**15, 2**64),
        *(MAX_QUANTITY_WH, MAX_QUANTITY_WH + 1, 10**7 - 1),
        *(MAX_PRICE_MICRO_PER_KWH, MAX_PRICE_MICRO_PER_KWH + 1, 10**8 - 1),
        *(MAX_POWER_W, MAX_POWER_W + 1, -MAX_POWER_W, -MAX_POWER_W - 1, 10**6 - 1, 1 - 10**6),
    ]
)
_INTS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-2 * MAX_POWER_W, max_value=2 * MAX_PRICE_MICRO_PER_KWH),
    _BOUNDS,
    st.booleans(),
)
_ODD_CHARS = 'ab7"\\\x00\x1f\x7f\u00e9\ud800 '
_NAMES = st.one_of(  # for the header's names: at and beyond their length limits
    st.text(alphabet=_ODD_CHARS, max_size=4),
    st.builds(
        lambda n, c: "k" * n + c, st.sampled_from([63, 64, 127, 128]), st.sampled_from(_ODD_CHARS)
    ),
    st.sampled_from(["k" * 64, "k" * 65, "m" * 128, "m" * 129, ""]),
)
_STRS = st.one_of(st.sampled_from(["buy", "sell", "Buy", "m1", "wattmesh/v1/order"]), _NAMES)
_VALUES = st.one_of(_INTS, _STRS, st.none(), st.lists(st.integers(), max_size=2))

_HEADER = {
    "agent": "h00001",
    "expires": 1_750_001_400,
    "interval": 1_750_000_500,
    "kid": _KEY.kid,
    "market": "bench",
    "seq": 7,
}
_BODIES = {
    "reading": [
        {"export_wh": 3, "import_wh": 1370, "meter_time": 1_750_000_500, "power_w": -5, "pv_wh": 0},
        {
            "battery_in_wh": 10,
            "battery_out_wh": 0,
            "export_wh": 0,
            "import_wh": 9,
            "meter_time": 1_750_000_499,
            "power_w": 0,
            "pv_wh": 12,
        },
    ],
    "order": [{"price_micro_per_kwh": 250_000, "quantity_wh": 1500, "side": "sell"}],
}


_CANONICAL: dict[str, Any] = {"sort_keys": True, "ensure_ascii": False, "separators": (",", ":")}
_OTHER_LAYOUTS = [
    _CANONICAL | {"sort_keys": False},
    _CANONICAL | {"ensure_ascii": True},
    _CANONICAL | {"separators": (", ", ": ")},
]
_OBJECT_CHANGES = ["name", "number", "number", "field", "key", "domain", "layout"]
_BYTE_CHANGES = ["digits", "text", "bytes"]
_NUMBER_AT = re.compile(rb"(?<=:)-?[0-9]+")
_TEXT_AT = re.compile(rb'(?<=:")[^"]*')
_IN_TEXT = [
    b'"',
    b"\\",
    b'\\"',
    b'","market":"m',
    b"\\u0041",
    b"\\n",
    b"\x7f",
    b"\xc3\xa9",
    b"\x00",
]
_PIECES = [b" ", b"0", b"-", b"1", b'"', b"\\", b"e1", b".0", b",", b"}", b"{", b":"]


def _change_object(draw: st.DrawFn, change: str, obj: dict[str, Any]) -> None:
    body = obj["body"]
    if change == "name":
        obj[draw(st.sampled_from(["agent", "kid", "market"]))] = draw(_NAMES)
    elif change == "number":
        target = draw(st.sampled_from([obj, body]))
        numbers = sorted(k for k, v in target.items() if type(v) is int)
        target[draw(st.sampled_from(numbers))] = draw(_INTS)
    elif change == "field":
        target = draw(st.sampled_from([obj, body]))
        target[draw(st.sampled_from(sorted(target)))] = draw(_VALUES)
    elif change == "key":
        target = draw(st.sampled_from([obj, body]))
        if draw(st.booleans()):
            del target[draw(st.sampled_from(sorted(target)))]
        else:
            target[draw(st.sampled_from(["extra", "battery_in_wh", "battery_out_wh"]))] = 1
    elif change == "domain":
        obj["domain"] = DOMAIN_PREFIX + draw(st.sampled_from(["order", "reading", "forecast"]))


def _change_bytes(draw: st.DrawFn, change: str, data: bytes) -> bytes:
    """A number's digits (``07``, ``-0``, ``1.0``, ``1e0``), a string's text or any byte."""
    spans = {"digits": _NUMBER_AT, "text": _TEXT_AT}
    if change in spans:
        found = [m.span() for m in spans[change].finditer(data)]
        if not found:
            return data
        lo, hi = draw(st.sampled_from(found))
        if change == "digits":
            number = draw(st.sampled_from([b"0", b"-0", b"-", b"00"])) + data[lo:hi]
            number = draw(
                st.sampled_from([number, b"-0", data[lo:hi] + b".0", data[lo:hi] + b"e0"])
            )
            return data[:lo] + number + data[hi:]
        at = draw(st.integers(lo, hi))
        return data[:at] + draw(st.sampled_from(_IN_TEXT)) + data[at:]
    at = draw(st.integers(0, len(data)))
    cut = draw(st.integers(0, 2))
    return data[:at] + draw(st.sampled_from([b"", *_PIECES])) + data[at + cut :]


@st.composite
def _signed_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    """A plain signed reading or order as an agent signs it, or one with a change or two:
    a name, number or any field given another value, a key dropped or added, another
    domain, a layout that is not canonical, a number's digits or a string's text changed
    in the bytes, bytes replaced, added or removed."""
    kind = draw(st.sampled_from(sorted(_BODIES)))
    body = dict(draw(st.sampled_from(_BODIES[kind])))
    obj: dict[str, Any] = _HEADER | {"domain": DOMAIN_PREFIX + kind, "body": body}
    changes = draw(st.lists(st.sampled_from(_OBJECT_CHANGES + _BYTE_CHANGES), max_size=2))
    if draw(st.integers(0, 3)) == 0:
        changes = []  # a quarter of the cases as signed
    layout = _CANONICAL
    for change in changes:
        if change == "layout":
            layout = draw(st.sampled_from(_OTHER_LAYOUTS))
        elif change in _OBJECT_CHANGES and isinstance(obj.get("body"), dict):
            _change_object(draw, change, obj)
    data = json.dumps(obj, **layout).encode("utf-8", "surrogatepass")
    for change in changes:
        if change in _BYTE_CHANGES:
            data = _change_bytes(draw, change, data)
    return kind, data


def _decoded_header(kind: str, signed: bytes) -> tuple[str, int, str, str, int] | str:
    try:
        h = decode_logged(kind, signed, _SIGNATURE).header
    except MessageError as exc:
        return f"refused: {exc}"
    return h.market, h.interval, h.agent, h.kid, h.seq


@settings(max_examples=1500)
@given(_signed_bytes())
def test_a_plain_header_is_what_the_full_decoding_gives(case: tuple[str, bytes]) -> None:
    kind, signed = case
    plain = plain_header(kind, signed)
    event("plain" if plain is not None else "not plain")
    if plain is not None:
        assert _decoded_header(kind, signed) == plain


def _plain(kind: str, **changes: Any) -> bytes:
    """The canonical bytes of the first plain ``kind`` with ``changes`` to its header and
    body fields (a body's field names end in ``_`` here: ``side_``)."""
    body = dict(_BODIES[kind][0]) | {k[:-1]: v for k, v in changes.items() if k.endswith("_")}
    header = _HEADER | {k: v for k, v in changes.items() if not k.endswith("_")}
    obj = header | {"domain": DOMAIN_PREFIX + kind, "body": body}
    return json.dumps(obj, **_CANONICAL).encode("utf-8", "surrogatepass")


_EDGES = [  # (kind, signed bytes, whether the glance decides it)
    *[("order", _plain("order", quantity_wh_=q), q < 10**7) for q in (10**7 - 1, 10**7, 10**7 + 1)],
    *[
        ("order", _plain("order", price_micro_per_kwh_=p), p < 10**8)
        for p in (10**8 - 1, 10**8, 10**8 + 1)
    ],
    *[("order", _plain("order", side_=side), side == "buy") for side in ("buy", "Buy", "ab")],
    *[
        ("reading", _plain("reading", power_w_=p), abs(p) < 10**6)
        for p in (10**6 - 1, 10**6, 10**6 + 1, 1 - 10**6, -(10**6), -(10**6) - 1)
    ],
    *[
        ("reading", _plain("reading", **{field: n}), n < 10**15)
        for field in ("seq", "interval", "expires", "import_wh_", "pv_wh_")
        for n in (10**15 - 1, 10**15, MAX_INT, MAX_INT + 1)
    ],
    *[("order", _plain("order", kid="k" * n), n <= 64) for n in (64, 65)],
    *[
        ("order", _plain("order", **{name: "m" * n}), n <= 128)
        for name in ("agent", "market")
        for n in (128, 129)
    ],
    *[("order", _plain("order", agent="h" + c), False) for c in '"\\\x00\x1f\u00e9\ud800'],
    ("order", _plain("order", agent="h\x7f"), True),  # JSON leaves DEL as it is
    *[("order", _plain("order").replace(b"h00001", b"h" + c), False) for c in (b"\x00", b"\x1f")],
    ("reading", _plain("reading").replace(b'"pv_wh":0', b'"pv_wh":-0'), False),
    ("reading", _plain("reading").replace(b'"power_w":-5', b'"power_w":-0'), False),
    ("reading", _plain("reading").replace(b'"power_w":-5', b'"power_w":-05'), False),
    ("reading", _plain("reading").replace(b'"pv_wh":0', b'"pv_wh":00'), False),
    ("reading", _plain("reading").replace(b'"seq":7', b'"seq":07'), False),
    ("reading", _plain("reading").replace(b'"seq":7', b'"seq":-0'), False),
    ("reading", _plain("reading").replace(b'"seq":7', b'"seq":7.0'), False),
    ("reading", _plain("reading").replace(b'"export_wh":3,', b""), False),
    ("reading", _plain("reading", battery_in_wh_=1), False),  # without battery_out_wh
    ("order", _plain("reading"), False),
]


@pytest.mark.parametrize(("kind", "signed", "plain"), _EDGES)
def test_the_edges_of_the_glance(kind: str, signed: bytes, plain: bool) -> None:
    """At each bound and character class, the glance decides (or leaves it to the full
    decoding) as it should, and agrees with it."""
    header = plain_header(kind, signed)
    assert (header is not None) == plain
    if header is not None:
        assert _decoded_header(kind, signed) == header


@settings(max_examples=300)
@given(
    st.integers(0, 10**15 - 1),
    st.integers(-(10**6) + 1, 10**6 - 1),
    st.integers(0, MAX_QUANTITY_WH - 1),
    st.integers(0, MAX_PRICE_MICRO_PER_KWH - 1),
    st.sampled_from(Side),
    st.booleans(),
    st.text(alphabet="abcxyz0123456789-_./:", max_size=128),
)
def test_messages_as_agents_sign_them_are_plain(
    register: int,
    power_w: int,
    quantity_wh: int,
    price: int,
    side: Side,
    battery: bool,
    agent: str,
) -> None:
    """The glance is what decides the common case (else it would hold but save nothing)."""
    extra = (register, 0) if battery else (None, None)
    bodies = [
        ReadingBody(register, register, 0, register, power_w, *extra),
        OrderBody(side, quantity_wh, price),
    ]
    for body in bodies:
        message = sign_message(
            _KEY, body, market="m1", interval=900, agent=agent, seq=register, expires=register
        )
        kind = message.header.kind
        plain = plain_header(kind, message.signed_bytes)
        assert plain == ("m1", 900, agent, _KEY.kid, register)
        assert _decoded_header(kind, message.signed_bytes) == plain
