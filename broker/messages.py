"""Message schemas and the signed envelope.

Every message on the bus is a signed envelope (see docs/protocol.md)::

    {"signed": {"domain": "wattmesh/v1/<kind>", "market": str, "interval": int,
                "agent": str, "kid": str, "seq": int, "expires": int, "body": {...}},
     "sig": "<base64 DER ECDSA-P256-SHA256 over RFC 8785 bytes of 'signed'>"}

Quantities are integers only: energy in Wh, power in W, prices in micro-units of
the currency per kWh, times in epoch seconds (UTC).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from broker._validate import (
    as_object,
    exact_keys,
    get_choice,
    get_int,
    get_int_list,
    get_opt_int,
    get_opt_str,
    get_str,
    schema_error,
)
from broker.canonical import canonical_bytes as canonical_bytes  # noqa: PLC0414 (re-export)
from broker.canonical import canonical_bytes_of_checked
from broker.errors import MessageError, RejectReason
from broker.keys import SigningKey, VerifyingKey
from broker.receipts import CheckpointNoteBody, ReceiptBody

PROTOCOL_VERSION = 1
DOMAIN_PREFIX = f"wattmesh/v{PROTOCOL_VERSION}/"
MAX_MESSAGE_BYTES = 1 << 20
MAX_QUANTITY_WH = 10_000_000  # 10 MWh in one interval is far beyond any household
MAX_PRICE_MICRO_PER_KWH = 100_000_000  # 100 currency units per kWh
MAX_FORECAST_STEPS = 7 * 96
MAX_TRADES = 1_000_000


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class Phase(StrEnum):
    """What a market announcement says about an interval."""

    OPEN = "open"
    CLEARED = "cleared"
    CLOSED = "closed"


class Body(Protocol):
    KIND: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReadingBody:
    """Cumulative registers (Wh) at ``meter_time`` (epoch s, UTC).

    ``import_wh``/``export_wh`` are the grid meter's registers; ``pv_wh`` is the PV
    generation meter's register (0 for a household without PV). Demand over a period is
    then ``d_import - d_export + d_pv``.

    A household with a battery behind the meter also sends ``battery_in_wh`` and
    ``battery_out_wh``, the battery's cumulative AC energy in and out (both or neither;
    absent, not null, without a battery). Demand is then
    ``d_import - d_export + d_pv - d_battery_in + d_battery_out``.
    """

    KIND: ClassVar[str] = "reading"
    meter_time: int
    import_wh: int
    export_wh: int
    pv_wh: int
    power_w: int  # grid power at meter_time: positive when importing, negative exporting
    battery_in_wh: int | None = None
    battery_out_wh: int | None = None

    def __post_init__(self) -> None:
        if (self.battery_in_wh is None) != (self.battery_out_wh is None):
            raise ValueError("battery_in_wh and battery_out_wh go together")

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "meter_time": self.meter_time,
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "pv_wh": self.pv_wh,
            "power_w": self.power_w,
        }
        if self.battery_in_wh is not None:
            obj["battery_in_wh"] = self.battery_in_wh
            obj["battery_out_wh"] = self.battery_out_wh
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ReadingBody:
        keys = {"meter_time", "import_wh", "export_wh", "pv_wh", "power_w"}
        battery = obj.keys() & {"battery_in_wh", "battery_out_wh"}
        if battery:
            keys |= {"battery_in_wh", "battery_out_wh"}
        exact_keys(obj, keys, "reading")
        return cls(
            meter_time=get_int(obj, "meter_time"),
            import_wh=get_int(obj, "import_wh"),
            export_wh=get_int(obj, "export_wh"),
            pv_wh=get_int(obj, "pv_wh"),
            power_w=get_int(obj, "power_w", minimum=-1_000_000, maximum=1_000_000),
            battery_in_wh=get_int(obj, "battery_in_wh") if battery else None,
            battery_out_wh=get_int(obj, "battery_out_wh") if battery else None,
        )


@dataclass(frozen=True)
class OrderBody:
    """A bid (buy) or offer (sell) for the interval named in the header."""

    KIND: ClassVar[str] = "order"
    side: Side
    quantity_wh: int
    price_micro_per_kwh: int

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side.value,
            "quantity_wh": self.quantity_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> OrderBody:
        exact_keys(obj, {"side", "quantity_wh", "price_micro_per_kwh"}, "order")
        return cls(
            side=Side(get_choice(obj, "side", ("buy", "sell"))),
            quantity_wh=get_int(obj, "quantity_wh", maximum=MAX_QUANTITY_WH),
            price_micro_per_kwh=get_int(
                obj, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH
            ),
        )


@dataclass(frozen=True)
class ForecastBody:
    """Forecast energy per interval from ``start`` (epoch s) in steps of ``interval_s``."""

    KIND: ClassVar[str] = "forecast"
    start: int
    interval_s: int
    demand_wh: tuple[int, ...]
    pv_wh: tuple[int, ...]
    model: str
    fallback: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "interval_s": self.interval_s,
            "demand_wh": list(self.demand_wh),
            "pv_wh": list(self.pv_wh),
            "model": self.model,
            "fallback": self.fallback,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ForecastBody:
        exact_keys(
            obj, {"start", "interval_s", "demand_wh", "pv_wh", "model", "fallback"}, "forecast"
        )
        demand = get_int_list(obj, "demand_wh", max_items=MAX_FORECAST_STEPS)
        pv = get_int_list(obj, "pv_wh", max_items=MAX_FORECAST_STEPS)
        if len(demand) != len(pv):
            raise schema_error("demand_wh and pv_wh differ in length")
        return cls(
            start=get_int(obj, "start"),
            interval_s=get_int(obj, "interval_s", minimum=1, maximum=86_400),
            demand_wh=demand,
            pv_wh=pv,
            model=get_str(obj, "model", max_len=64),
            fallback=get_opt_str(obj, "fallback"),
        )


@dataclass(frozen=True)
class AnnouncementBody:
    """The market operator's word on an interval: open, cleared, or market closed."""

    KIND: ClassVar[str] = "announcement"
    phase: Phase
    interval_s: int
    retail_micro_per_kwh: int
    feed_in_micro_per_kwh: int
    price_micro_per_kwh: int | None = None  # the clearing price, once cleared
    volume_wh: int = 0
    tree_size: int = 0
    root: str = ""  # hex Merkle root of the log after this interval

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "interval_s": self.interval_s,
            "retail_micro_per_kwh": self.retail_micro_per_kwh,
            "feed_in_micro_per_kwh": self.feed_in_micro_per_kwh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
            "volume_wh": self.volume_wh,
            "tree_size": self.tree_size,
            "root": self.root,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnnouncementBody:
        exact_keys(
            obj,
            {
                "phase",
                "interval_s",
                "retail_micro_per_kwh",
                "feed_in_micro_per_kwh",
                "price_micro_per_kwh",
                "volume_wh",
                "tree_size",
                "root",
            },
            "announcement",
        )
        return cls(
            phase=Phase(get_choice(obj, "phase", tuple(p.value for p in Phase))),
            interval_s=get_int(obj, "interval_s", minimum=1, maximum=86_400),
            retail_micro_per_kwh=get_int(obj, "retail_micro_per_kwh"),
            feed_in_micro_per_kwh=get_int(obj, "feed_in_micro_per_kwh"),
            price_micro_per_kwh=get_opt_int(obj, "price_micro_per_kwh"),
            volume_wh=get_int(obj, "volume_wh"),
            tree_size=get_int(obj, "tree_size"),
            root=get_str(obj, "root", max_len=64),
        )


@dataclass(frozen=True)
class TradeLine:
    """One fill: ``seller`` delivers ``quantity_wh`` to ``buyer`` at the interval's price."""

    buyer: str
    seller: str
    quantity_wh: int
    price_micro_per_kwh: int

    def to_json(self) -> dict[str, Any]:
        return {
            "buyer": self.buyer,
            "seller": self.seller,
            "quantity_wh": self.quantity_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
        }

    @classmethod
    def from_json(cls, value: Any) -> TradeLine:
        obj = as_object(value, "trade")
        exact_keys(obj, {"buyer", "seller", "quantity_wh", "price_micro_per_kwh"}, "trade")
        return cls(
            buyer=get_str(obj, "buyer"),
            seller=get_str(obj, "seller"),
            quantity_wh=get_int(obj, "quantity_wh", maximum=MAX_QUANTITY_WH),
            price_micro_per_kwh=get_int(obj, "price_micro_per_kwh"),
        )


@dataclass(frozen=True)
class TradesBody:
    """Every trade of one interval, as cleared and logged."""

    KIND: ClassVar[str] = "trades"
    trades: tuple[TradeLine, ...]

    def to_json(self) -> dict[str, Any]:
        return {"trades": [t.to_json() for t in self.trades]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TradesBody:
        exact_keys(obj, {"trades"}, "trades")
        items = obj["trades"]
        if not isinstance(items, list) or len(items) > MAX_TRADES:
            raise schema_error("trades must be a list")
        return cls(trades=tuple(TradeLine.from_json(t) for t in items))


@dataclass(frozen=True)
class RejectionBody:
    """Why the ledger refused message ``ref`` (its message id) from this household."""

    KIND: ClassVar[str] = "rejection"
    ref: str
    ref_seq: int | None
    reason: RejectReason
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "ref_seq": self.ref_seq,
            "reason": self.reason.value,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RejectionBody:
        exact_keys(obj, {"ref", "ref_seq", "reason", "detail"}, "rejection")
        return cls(
            ref=get_str(obj, "ref", max_len=64),
            ref_seq=get_opt_int(obj, "ref_seq"),
            reason=RejectReason(get_choice(obj, "reason", tuple(r.value for r in RejectReason))),
            detail=get_str(obj, "detail", max_len=512),
        )


_BODY_TYPES: dict[str, Any] = {
    cls.KIND: cls
    for cls in (
        ReadingBody,
        OrderBody,
        ForecastBody,
        AnnouncementBody,
        TradesBody,
        RejectionBody,
        CheckpointNoteBody,
        ReceiptBody,
    )
}

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

    @property
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


_HEADER_KEYS = {"domain", "market", "interval", "agent", "kid", "seq", "expires", "body"}


_MAX_INT_DIGITS = 32  # far above MAX_INT; keeps int() clear of Python's 4300-digit limit


def _parse_int(value: str) -> int:
    if len(value) > _MAX_INT_DIGITS:
        raise MessageError(RejectReason.OUT_OF_BOUNDS, f"integer with {len(value)} characters")
    return int(value)


def _reject_floats(value: str) -> Any:
    raise schema_error(f"non-integer number {value}")


def _reject_constant(value: str) -> Any:
    raise schema_error(f"invalid JSON constant {value}")


def parse_header(signed: Mapping[str, Any], kind: str) -> Header:
    """The header fields of a ``signed`` object whose domain names ``kind``, checked."""
    return Header(
        kind=kind,
        market=get_str(signed, "market"),
        interval=get_int(signed, "interval"),
        agent=get_str(signed, "agent"),
        kid=get_str(signed, "kid", max_len=64),
        seq=get_int(signed, "seq"),
        expires=get_int(signed, "expires"),
    )


def decode_message(payload: bytes) -> SignedMessage:
    """Parse and schema-check an envelope; raise ``MessageError`` with the reason."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError(RejectReason.OUT_OF_BOUNDS, f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        outer = json.loads(
            payload.decode("utf-8"),
            parse_int=_parse_int,
            parse_float=_reject_floats,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(RejectReason.MALFORMED_JSON, str(exc)[:200]) from exc
    outer = as_object(outer, "message")
    exact_keys(outer, {"signed", "sig"}, "envelope")
    signed = as_object(outer["signed"], "signed")
    exact_keys(signed, _HEADER_KEYS, "signed")
    domain = get_str(signed, "domain")
    if not domain.startswith(DOMAIN_PREFIX):
        raise schema_error(f"unknown domain {domain!r}")
    kind = domain.removeprefix(DOMAIN_PREFIX)
    body_type = _BODY_TYPES.get(kind)
    if body_type is None:
        raise schema_error(f"unknown message kind {kind!r}")
    header = parse_header(signed, kind)
    body: Body = body_type.from_json(as_object(signed["body"], "body"))
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
