"""The exception tree of wattmesh's wire contract.

Everything that can go wrong with a message raises :class:`MessageError`, whose
``reason`` is one of the named :class:`RejectReason` values that the ledger sends
back to the household on its error topic.
"""

from __future__ import annotations

from enum import StrEnum


class WattmeshError(Exception):
    """Base class of every error wattmesh raises on purpose."""


class RejectReason(StrEnum):
    """Why a message was refused. The values are part of the wire contract."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_MISMATCH = "key_mismatch"
    ROTATED_KEY = "rotated_key"  # the agent's key was replaced by a rotation
    REVOKED_KEY = "revoked_key"
    REPLAY = "replay"
    WRONG_MARKET = "wrong_market"
    WRONG_INTERVAL = "wrong_interval"
    LATE = "late"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    OUT_OF_BOUNDS = "out_of_bounds"
    BEYOND_CONNECTION = "beyond_connection"  # an order above the connection over the interval
    # Counted by the ledger, never sent back (there is no household to send it to):
    BAD_TOPIC = "bad_topic"  # not a household topic of the market this service reads
    # A household's status beyond its budget of statuses judged (ledger/status.py):
    # dropped undecoded, so a flood on a status topic costs no decode or verify each.
    STATUS_LIMITED = "status_limited"


class MessageError(WattmeshError):
    """A message that cannot be accepted, with a reason the sender can see."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[MessageError], tuple[RejectReason, str]]:
        # Picklable (a worker process hands back the errors of what it decoded).
        return (type(self), (self.reason, self.detail))


class KeyFileError(WattmeshError):
    """A key file that is missing, unreadable, malformed or too widely readable."""


class ConfigError(WattmeshError):
    """A configuration value that is out of range or malformed."""
