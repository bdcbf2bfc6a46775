"""The forecasting service's anomaly flags in the log: accepted when its key signed them.

A flag (:class:`broker.messages.AnomalyBody`) arrives on ``household/<id>/anomaly``. The
ledger takes it only when it names that household, is for this market, comes from the
forecaster (header agent ``forecaster``) and verifies under the forecaster's key given
in ``ledger.toml`` (``forecaster_key_file``); anything else is refused with a reason and
counted. A taken flag is logged with the next interval as an ``anomaly`` entry: the
envelope exactly as signed plus the forecaster's public key, so ``ledger verify`` (and
anyone) re-checks the signature from the log alone, and compares the key with the one
the forecaster publishes.
"""

from __future__ import annotations

import base64
import binascii
import json

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import AnomalyBody, SignedMessage, canonical_bytes, decode_message
from wattmesh.ledger.entries import EntryKind, NewEntry

__all__ = ["ANOMALY_KIND", "FORECASTER_ID", "anomaly_entry", "anomaly_problem", "take_anomaly"]

ANOMALY_KIND = EntryKind.ANOMALY
FORECASTER_ID = "forecaster"


def take_anomaly(
    payload: bytes, *, agent: str, market_id: str, key: VerifyingKey | None
) -> SignedMessage:
    """The flag in ``payload`` (on household ``agent``'s topic); MessageError if refused."""
    message = decode_message(payload)
    body = message.body_as(AnomalyBody)
    if key is None:
        raise MessageError(RejectReason.UNKNOWN_KEY, "no forecaster key is configured")
    if message.header.agent != FORECASTER_ID:
        raise MessageError(RejectReason.KEY_MISMATCH, "anomaly flags come from the forecaster")
    if message.header.market != market_id:
        raise MessageError(RejectReason.WRONG_MARKET, "flag for another market")
    if body.agent != agent:
        raise MessageError(RejectReason.KEY_MISMATCH, "topic names another household")
    message.verify(key)
    return message


def anomaly_entry(message: SignedMessage, key: VerifyingKey) -> NewEntry:
    """The ``anomaly`` entry of a taken flag (interval: the episode's first interval)."""
    body = message.body_as(AnomalyBody)
    obj = {
        "kind": ANOMALY_KIND,
        "public_key": base64.b64encode(key.der()).decode("ascii"),
        "sig": base64.b64encode(message.signature).decode("ascii"),
        "signed": json.loads(message.signed_bytes),
    }
    return NewEntry(ANOMALY_KIND, body.interval, body.agent, None, canonical_bytes(obj))


def anomaly_problem(market: str, agent: str | None, interval: int, data: bytes) -> str | None:
    """What is wrong with a logged ``anomaly`` entry, or None (for ``ledger verify``)."""
    try:
        obj = json.loads(data)
        if set(obj) != {"kind", "public_key", "sig", "signed"}:
            return "anomaly entry is malformed"
        key = VerifyingKey.from_der(base64.b64decode(obj["public_key"], validate=True))
        wire = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
        message = take_anomaly(wire, agent=str(agent), market_id=market, key=key)
    except MessageError as exc:
        return f"anomaly entry: {exc}"
    except (ValueError, TypeError, KeyError, binascii.Error):
        return "anomaly entry is malformed"
    if message.body_as(AnomalyBody).interval != interval:
        return "anomaly columns do not match its data"
    if canonical_bytes(obj) != data:
        return "anomaly entry is not in canonical form"
    return None
