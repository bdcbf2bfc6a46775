"""broker.messages round trips: every kind signs, encodes, decodes and verifies.

Signatures are real (P-256 via ``cryptography``); interop is checked against the
independent pure-Python ``ecdsa`` package, a dev-only dependency (see tests/test_keys.py
for why it is never used at run time).
"""

from __future__ import annotations

import base64
import hashlib
import json

import ecdsa
import pytest
import rfc8785
from ecdsa.util import sigdecode_der, sigencode_der
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.messagekit import (
    INTERVAL,
    KEY,
    MAX_INT,
    MESSAGES,
    OTHER,
    SAMPLES,
    SEQ,
    encode,
    sign,
    wire_obj,
    with_at,
)
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    DOMAIN_PREFIX,
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
    decode_message,
    sign_message,
)
from wattmesh.ledger.entries import message_entry


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
    decoded = _assert_round_trip(sign(body), KEY)
    assert decoded.body == body
    assert json.loads(decoded.signed_bytes)["body"]["price_micro_per_kwh"] is None


def test_message_id_is_stable() -> None:
    body = SAMPLES["order"]
    first, second = sign(body), sign(body)
    assert first.to_wire() == second.to_wire()  # RFC 6979: same key and bytes, same signature
    assert first.message_id == second.message_id
    assert sign(body, seq=SEQ + 1).message_id != first.message_id
    assert sign(body, OTHER).message_id != first.message_id


def test_message_id_survives_reserialisation() -> None:
    """Whitespace, key order and \\u escapes on the wire change neither id nor signature."""
    message = sign(SAMPLES["trades"], agent='häus-1 "ü" ☀')
    obj = wire_obj(message)
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
    tampered = with_at(wire_obj(MESSAGES["order"]), ("signed", "body", "quantity_wh"), 1)
    decoded = decode_message(encode(tampered))  # decoding succeeds ...
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
    message = sign(body, agent=agent)
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
    their_wire = encode({"signed": wire_obj["signed"], "sig": base64.b64encode(their_sig).decode()})
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
