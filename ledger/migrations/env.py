"""Alembic's environment for the ledger database, driven by :mod:`ledger.schema`.

No ``alembic.ini``: :func:`ledger.schema.run_migrations` passes the open connection (in
its transaction) in ``config.attributes["connection"]``; the revisions run in it and
stamp the version table :data:`ledger.schema.VERSION_TABLE`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from wattmesh.ledger.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("the ledger's migrations run through wattmesh.ledger.schema only")
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
