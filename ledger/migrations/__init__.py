"""The ledger database's schema migrations (Alembic), run by :mod:`ledger.schema`.

``env.py`` takes the connection :mod:`ledger.schema` hands it (no ``alembic.ini``);
``versions/`` holds one revision per schema change, oldest first: ``0001_baseline`` is
the schema every ledger had before the schema was versioned. A new revision: a file
``versions/NNNN_<what>.py`` with ``revision = "NNNN"``, ``down_revision`` the previous
one, and ``upgrade()`` written with ``alembic.op`` (``downgrade()`` raises: a ledger is
never migrated back; restore the backup taken before ``wattmesh ledger migrate``).
"""

__all__ = ["env", "versions"]
