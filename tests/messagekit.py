"""Signed sample messages of every kind and JSON editing helpers for the broker.messages tests.

Keys are fixed P-256 keys (``KEY``, ``OTHER``), so signatures are reproducible (RFC 6979).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.forecast_bodies import HEALTH_COUNTERS
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    HealthBody,
    OrderBody,
    Phase,
    ReadingBody,
    RejectionBody,
    Side,
    SignedMessage,
    TradeLine,
    TradesBody,
    TrainedOn,
    decode_message,
    sign_message,
)

MAX_INT = 2**53 - 1
MARKET = "m1"
AGENT = "h1"
INTERVAL = 1_700_000_100
SEQ = 7
EXPIRES = INTERVAL + 1_800

JsonPath = tuple[str | int, ...]


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
        version="prophet-1.5.0/2",
        issued_s=1_700_000_905,
        trained_on=TrainedOn(tree_size=4_321, root="ab" * 32),
        demand_p10_wh=(60, 50, 0, 200),
        demand_p90_wh=(200, 180, 50, 420),
        pv_p10_wh=(0, 20, 200, 0),
        pv_p90_wh=(0, 60, 330, 40),
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
    "health": HealthBody(
        state="ok",
        started_s=1_700_000_000,
        counters={name: 3 + i for i, name in enumerate(HEALTH_COUNTERS)},
        trained_on=TrainedOn(tree_size=4_321, root="cd" * 32),
        last_refit_s=1_700_000_050,
    ),
}


def sign(body: Body, key: SigningKey = KEY, *, agent: str = AGENT, seq: int = SEQ) -> SignedMessage:
    return sign_message(
        key, body, market=MARKET, interval=INTERVAL, agent=agent, seq=seq, expires=EXPIRES
    )


MESSAGES = {kind: sign(body) for kind, body in SAMPLES.items()}


# ---------------------------------------------------------------------------- JSON editing


def wire_obj(message: SignedMessage) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(message.to_wire())
    return obj


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def get_at(obj: Any, path: JsonPath) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def with_at(obj: Any, path: JsonPath, value: Any) -> Any:
    """A deep copy of ``obj`` with the value at ``path`` set (or added) to ``value``."""
    out = copy.deepcopy(obj)
    get_at(out, path[:-1])[path[-1]] = value
    return out


def without_at(obj: Any, path: JsonPath) -> Any:
    out = copy.deepcopy(obj)
    del get_at(out, path[:-1])[path[-1]]
    return out


_RAW = "\u0000raw\u0000"


def with_raw_at(obj: Any, path: JsonPath, raw: str) -> bytes:
    """Wire bytes with the JSON text ``raw`` at ``path`` (for numbers json.dumps never writes)."""
    text = json.dumps(with_at(obj, path, _RAW), separators=(",", ":"))
    marker = json.dumps(_RAW)
    assert text.count(marker) == 1
    return text.replace(marker, raw).encode("utf-8")


def reason_of(payload: bytes) -> RejectReason:
    with pytest.raises(MessageError) as info:
        decode_message(payload)
    assert_rejection_signable(info.value)
    return info.value.reason


def assert_rejection_signable(exc: MessageError) -> None:
    """The ledger sends ``exc`` back in a signed RejectionBody; that must always work."""
    body = RejectionBody(ref="0" * 64, ref_seq=None, reason=exc.reason, detail=exc.detail[:512])
    echoed = decode_message(sign(body).to_wire())
    assert echoed.body == body
