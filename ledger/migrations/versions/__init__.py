"""The revisions, oldest first (Alembic loads them by path; see ``ledger.migrations``)."""

__all__ = ["r0001_baseline"]
