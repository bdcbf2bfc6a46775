"""The keys of the log's meta table: what a log is for, set once when it is created.

Written by :class:`ledger.ledger.Ledger`, read by :mod:`ledger.verify` and
:mod:`ledger.startcheck` (the table itself: :meth:`ledger.store.LedgerStore.get_meta`).
"""

from __future__ import annotations

__all__ = ["META_MARKET", "META_MECHANISM", "META_OPERATOR_KEY", "META_ORIGIN"]

META_MARKET = "market_id"
META_ORIGIN = "origin"
META_OPERATOR_KEY = "operator_public_key"
META_MECHANISM = "mechanism"
