"""The signed envelope: sign, decode, verify.

Every message on the bus is a signed envelope (see docs/protocol.md)::

    {"signed": {"domain": "wattmesh/v1/<kind>", "market": str, "interval": int,
                "agent": str, "kid": str, "seq": int, "expires": int, "body": {...}},
     "sig": "<base64 DER ECDSA-P256-SHA256 over RFC 8785 bytes of 'signed'>"}

The bodies and their schemas are :mod:`broker.bodies`, re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from wattmesh.broker._validate import MAX_INT, as_object, exact_keys, get_int, get_str, schema_error
from wattmesh.broker.bodies import (
    BODY_TYPES,
    MAX_FORECAST_STEPS,
    MAX_POWER_W,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    MAX_TRADES,
    AnnouncementBody,
    Body,
    OrderBody,
    Phase,
    Presence,
    ReadingBody,
    RejectionBody,
    Side,
    StatusBody,
    SummaryBody,
    TradeLine,
    TradesBody,
)
from wattmesh.broker.canonical import canonical_bytes, canonical_bytes_of_checked
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.forecast_bodies import AnomalyBody, ForecastBody, HealthBody, TrainedOn
from wattmesh.broker.keys import SigningKey, VerifyingKey

__all__ = [
    "DOMAIN_PREFIX",
    "MAX_FORECAST_STEPS",
    "MAX_INT",
    "MAX_MESSAGE_BYTES",
    "MAX_POWER_W",
    "MAX_PRICE_MICRO_PER_KWH",
    "MAX_QUANTITY_WH",
    "MAX_TRADES",
    "PROTOCOL_VERSION",
    "AnnouncementBody",
    "AnomalyBody",
    "Body",
    "ForecastBody",
    "Header",
    "HealthBody",
    "OrderBody",
    "Phase",
    "Presence",
    "ReadingBody",
    "RejectionBody",
    "Side",
    "SignedMessage",
    "Signer",
    "StatusBody",
    "SummaryBody",
    "TradeLine",
    "TradesBody",
    "TrainedOn",
    "canonical_bytes",
    "decode_message",
    "parse_header",
    "parse_json",
    "parse_signed",
    "schema_error",
    "sign_message",
]

PROTOCOL_VERSION = 1
DOMAIN_PREFIX = f"wattmesh/v{PROTOCOL_VERSION}/"
MAX_MESSAGE_BYTES = 1 << 20


B = TypeVar("B", bound=Body)


@dataclass(frozen=True)
class Header:
    """The routing and anti-replay fields that are signed with every body."""

    kind: str
    market: str
    interval: int  # start of the interval concerned, epoch s
    agent: str
    kid: str
    seq: int  # per-agent, strictly increasing across all of the agent's messages
    expires: int  # epoch s after which the message is void


@dataclass(frozen=True)
class SignedMessage:
    """A decoded envelope. Its signature is checked by :meth:`verify`, not on decode."""

    header: Header
    body: Body
    signature: bytes
    signed_bytes: bytes  # the RFC 8785 bytes the signature covers

    @cached_property
    def message_id(self) -> str:
        """Hex SHA-256 of the signed bytes (never of the malleable signature)."""
        return hashlib.sha256(self.signed_bytes).hexdigest()

    def verify(self, key: VerifyingKey) -> None:
        """Raise ``MessageError`` unless ``key`` signed this message."""
        if key.kid != self.header.kid:
            raise MessageError(RejectReason.KEY_MISMATCH, "message names another key id")
        if not key.verify(self.signature, self.signed_bytes):
            raise MessageError(RejectReason.BAD_SIGNATURE, "signature does not verify")

    def body_as(self, body_type: type[B]) -> B:
        if not isinstance(self.body, body_type):
            raise schema_error(f"expected a {body_type.KIND} message, got {self.header.kind}")
        return self.body

    def to_wire(self) -> bytes:
        return _wire(self.signed_bytes, self.signature)


def _wire(signed_bytes: bytes, signature: bytes) -> bytes:
    sig = base64.b64encode(signature)
    return b'{"signed":' + signed_bytes + b',"sig":"' + sig + b'"}'


def sign_message(
    key: SigningKey,
    body: Body,
    *,
    market: str,
    interval: int,
    agent: str,
    seq: int,
    expires: int,
) -> SignedMessage:
    """Sign ``body`` for the given market, interval and agent; see :func:`SignedMessage.to_wire`."""
    header = Header(
        kind=body.KIND,
        market=market,
        interval=interval,
        agent=agent,
        kid=key.kid,
        seq=seq,
        expires=expires,
    )
    signed_bytes = canonical_bytes(_signed_object(header, body.to_json()))
    return SignedMessage(header, body, key.sign(signed_bytes), signed_bytes)


@dataclass(frozen=True)
class Signer:
    """One sender's signing identity: its key, market and id (a household, the operator,
    the forecaster). Each sender numbers its own messages (``seq``)."""

    key: SigningKey
    market: str
    agent: str

    def sign(self, body: Body, *, interval: int, seq: int, expires: int) -> SignedMessage:
        """:func:`sign_message` as this sender."""
        return sign_message(
            self.key,
            body,
            market=self.market,
            interval=interval,
            agent=self.agent,
            seq=seq,
            expires=expires,
        )


def _signed_object(header: Header, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "domain": DOMAIN_PREFIX + header.kind,
        "market": header.market,
        "interval": header.interval,
        "agent": header.agent,
        "kid": header.kid,
        "seq": header.seq,
        "expires": header.expires,
        "body": body,
    }


_HEADER_KEYS = frozenset({"domain", "market", "interval", "agent", "kid", "seq", "expires", "body"})
_ENVELOPE_KEYS = frozenset({"signed", "sig"})


_MAX_INT_DIGITS = 32  # far above MAX_INT; keeps int() clear of Python's 4300-digit limit


def _parse_int(value: str) -> int:
    if len(value) > _MAX_INT_DIGITS:
        raise MessageError(RejectReason.OUT_OF_BOUNDS, f"integer with {len(value)} characters")
    return int(value)


def _reject_floats(value: str) -> Any:
    raise schema_error(f"non-integer number {value}")


def _reject_constant(value: str) -> Any:
    raise schema_error(f"invalid JSON constant {value}")


# Built once (json.loads with hooks builds a decoder per call). The parse_int hook costs
# a Python call per integer, so it runs only for payloads that hold a run of more digits
# than any integer may have (found by mapping each byte to digit or not, in C).
_DECODE = json.JSONDecoder(parse_float=_reject_floats, parse_constant=_reject_constant).decode
_DECODE_HOOKED = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_reject_floats, parse_constant=_reject_constant
).decode
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
_LONG_RUN = b"1" * (_MAX_INT_DIGITS + 1)


def parse_json(payload: bytes) -> Any:
    """The JSON value of ``payload``: integers (bounded in size), strings, objects, lists;
    a float or a NaN/Infinity constant is a schema error; raise MessageError."""
    long_run = _LONG_RUN in payload.translate(_DIGITS_AS_ONES)
    try:
        return (_DECODE_HOOKED if long_run else _DECODE)(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(RejectReason.MALFORMED_JSON, str(exc)[:200]) from exc


def parse_header(signed: Mapping[str, Any], kind: str) -> Header:
    """The header fields of a ``signed`` object whose domain names ``kind``, checked."""
    market, agent, kid = signed["market"], signed["agent"], signed["kid"]
    interval, seq, expires = signed["interval"], signed["seq"], signed["expires"]
    if (  # the common case at a glance; anything else gets the checks that say why
        type(market) is str
        and type(agent) is str
        and type(kid) is str
        and len(market) <= _MAX_NAME
        and len(agent) <= _MAX_NAME
        and len(kid) <= _MAX_KID
        and market.isascii()
        and agent.isascii()
        and kid.isascii()
        and type(interval) is int
        and type(seq) is int
        and type(expires) is int
        and 0 <= interval <= MAX_INT
        and 0 <= seq <= MAX_INT
        and 0 <= expires <= MAX_INT
    ):
        return Header(kind, market, interval, agent, kid, seq, expires)
    return Header(
        kind=kind,
        market=get_str(signed, "market", max_len=_MAX_NAME),
        interval=get_int(signed, "interval"),
        agent=get_str(signed, "agent", max_len=_MAX_NAME),
        kid=get_str(signed, "kid", max_len=_MAX_KID),
        seq=get_int(signed, "seq"),
        expires=get_int(signed, "expires"),
    )


_MAX_NAME = 128
_MAX_KID = 64
_KINDS_BY_DOMAIN = {DOMAIN_PREFIX + kind: kind for kind in BODY_TYPES}


def parse_signed(signed: Any) -> tuple[Header, Body]:
    """Header and body of a ``signed`` object (exact keys, a known domain, every field
    checked); raise MessageError naming what is wrong."""
    signed = as_object(signed, "signed")
    if signed.keys() != _HEADER_KEYS:
        exact_keys(signed, set(_HEADER_KEYS), "signed")
    domain = signed["domain"]
    kind = _KINDS_BY_DOMAIN.get(domain) if type(domain) is str else None
    if kind is None:
        domain = get_str(signed, "domain")
        if not domain.startswith(DOMAIN_PREFIX):
            raise schema_error(f"unknown domain {domain!r}")
        raise schema_error(f"unknown message kind {domain.removeprefix(DOMAIN_PREFIX)!r}")
    header = parse_header(signed, kind)
    body: Body = BODY_TYPES[kind].from_json(as_object(signed["body"], "body"))
    return header, body


def decode_message(payload: bytes) -> SignedMessage:
    """Parse and schema-check an envelope; raise ``MessageError`` with the reason."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError(RejectReason.OUT_OF_BOUNDS, f"message over {MAX_MESSAGE_BYTES} bytes")
    outer = as_object(parse_json(payload), "message")
    if outer.keys() != _ENVELOPE_KEYS:
        exact_keys(outer, set(_ENVELOPE_KEYS), "envelope")
    header, body = parse_signed(outer["signed"])
    sig_text = get_str(outer, "sig", max_len=200)
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(RejectReason.BAD_SIGNATURE, "sig is not base64") from exc
    # Every field was checked above (ASCII keys, bounded integers, strings), so the C
    # encoder's bytes are the canonical ones; a lone surrogate has no canonical form.
    try:
        signed_bytes = canonical_bytes_of_checked(_signed_object(header, body.to_json()))
    except UnicodeEncodeError as exc:
        raise schema_error("a string is not valid Unicode") from exc
    return SignedMessage(header, body, signature, signed_bytes)
