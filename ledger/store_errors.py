"""Why a ledger database cannot be used: a bad URL or path, or a failing database.

Standard library only (with ``broker.errors``), so the command line can tell the two
apart without loading SQLAlchemy: :class:`NoLedgerDatabase` is a bad argument (exit 2),
:class:`StoreError` a failure (exit 1). Raised by :mod:`ledger.store`.
"""

from __future__ import annotations

from wattmesh.broker.errors import ConfigError, FailureError, LedgerError

__all__ = ["NoLedgerDatabase", "SchemaVersionError", "StoreError"]


class NoLedgerDatabase(LedgerError, ConfigError):
    """The URL names no usable ledger database: no such file or folder, a file that is
    not a SQLite database, a database without the ledger's tables, an in-memory
    database where a file is needed."""


class SchemaVersionError(LedgerError, ConfigError):
    """The database's schema version is not the one this code writes: an older one
    (``wattmesh ledger migrate`` brings it up to date) or one this code does not know
    (written by a newer wattmesh)."""


class StoreError(LedgerError, FailureError):
    """The database cannot be opened, reached or read: a server that does not answer,
    a damaged file, a disk error. A failure of the database, not of the arguments."""
