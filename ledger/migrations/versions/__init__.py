"""The revisions, oldest first (Alembic loads them by path; see ``ledger.migrations``)."""
