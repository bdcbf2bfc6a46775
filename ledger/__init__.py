"""The operator"s ledger: admits signed messages, clears, settles and logs every interval.

Pure clearing, market mechanisms (``mechanisms/``), settlement, money and Merkle
maths; the ledger core and its SQL store (SQLite or PostgreSQL); the verifier, the
leadership lease, the MQTT service and the wall-clock operator. It imports ``broker``
only.

Other packages import only the modules named in ``__all__`` below, and from each
only the names in its own ``__all__`` (tests/test_public_surface.py checks it); every
other module and name is the package"s own.
"""

__all__ = [
    "accounts",
    "anomalies",
    "checkpoint",
    "clearing",
    "entries",
    "household_registry",
    "keyring",
    "lease",
    "ledger",
    "logcheck",
    "mechanisms",
    "meta",
    "metering",
    "money",
    "operator",
    "proofs",
    "schedule",
    "schema",
    "service",
    "settlement",
    "sigcheck",
    "startcheck",
    "statement",
    "store",
    "store_errors",
    "store_open",
    "verify",
]
