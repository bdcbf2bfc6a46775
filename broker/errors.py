"""The root and the branches of wattmesh's exception tree, and the wire contract's errors.

Every error wattmesh raises on purpose derives from :class:`WattmeshError` and from
the branch of the package that defines it (tests/test_error_tree.py keeps it so)::

    WattmeshError
    +-- BrokerError     broker/: MessageError, KeyFileError, TransportClosedError, ...
    +-- LedgerError     ledger/: StoreError, LogDamaged, KeyLogError, SnapshotError, ...
    +-- AgentError      agents/: MeterError, P1TelegramError
    +-- ForecastError   forecasting/
    +-- CommandError    wattmesh/ (the composition root): MarketInputError, BalanceError, ...
    +-- ConfigError     a bad configuration value, argument or path, from any package
    +-- FailureError    not the caller's input: something failed or does not add up

:class:`ConfigError` and :class:`FailureError` say what the command line does with an
error that reaches it (docs/protocol.md, "Ledger CLI exit codes"): ConfigError and any
other WattmeshError exit 2 with one line; a FailureError exits 1 (``StoreError`` with
one line, any other with its traceback). A class names its branch first, then either
kind, then a built-in class its callers may catch it as (``ValueError``).

Everything that can go wrong with a message raises :class:`MessageError`, whose
``reason`` is one of the named :class:`RejectReason` values that the ledger sends
back to the household on its error topic.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentError",
    "CommandError",
    "ConfigError",
    "DashboardError",
    "FailureError",
    "KeyFileError",
    "LedgerError",
    "MessageError",
    "RejectReason",
    "WattmeshError",
]


class WattmeshError(Exception):
    """Base class of every error wattmesh raises on purpose."""


class BrokerError(WattmeshError):
    """The branch of ``broker/``: the wire contract, keys, the transport."""


class LedgerError(WattmeshError):
    """The branch of ``ledger/``: the store, the log, settlement and accounts."""


class AgentError(WattmeshError):
    """The branch of ``agents/``: meters and the household agent."""


class ForecastError(WattmeshError):
    """The branch of ``forecasting/``."""


class DashboardError(WattmeshError):
    """The branch of ``dashboard/``: the read model and the web application."""


class CommandError(WattmeshError):
    """The branch of ``wattmesh/``, the composition root: commands and the simulation."""


class ConfigError(WattmeshError):
    """A configuration value, argument or path that is out of range or malformed (from
    any package; the command line exits 2)."""


class FailureError(WattmeshError):
    """Not the caller's input: the database, the transport or a task failed, or figures
    wattmesh wrote or computed do not add up (the command line exits 1)."""


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
    # A household's status beyond its budget of statuses judged (ledger/_status.py):
    # dropped undecoded, so a flood on a status topic costs no decode or verify each.
    STATUS_LIMITED = "status_limited"


class MessageError(BrokerError):
    """A message that cannot be accepted, with a reason the sender can see."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[MessageError], tuple[RejectReason, str]]:
        # Picklable (a worker process hands back the errors of what it decoded).
        return (type(self), (self.reason, self.detail))


class KeyFileError(BrokerError):
    """A key file that is missing, unreadable, malformed or too widely readable."""
