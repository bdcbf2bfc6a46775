"""The baseline: the schema of every ledger before the schema had a version.

Made by SQLModel's ``create_all`` until then: the log tables (``log_entry``,
``checkpoint``, ``merkle_node``, append-only by triggers), ``ledger_meta``, the
``intake`` journal, the ``state_snapshot`` and ``household_status``. Frozen here as
they were (the models in ``ledger/store.py`` may change; this file does not).

Idempotent: an unversioned database gets the tables it lacks (a ledger from before
the intake, snapshot or status tables) and the triggers, and is stamped; a new one
gets them all.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wattmesh.ledger._append_only import install_append_only_triggers_on

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

APPEND_ONLY = ("log_entry", "checkpoint", "merkle_node")


def _tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "log_entry",
        metadata,
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("interval", sa.Integer, nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(64), nullable=True, index=True),
        sa.Column("agent_seq", sa.Integer, nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("agent", "agent_seq", name="uq_agent_seq"),
    )
    sa.Table(
        "checkpoint",
        metadata,
        sa.Column("tree_size", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "merkle_node",
        metadata,
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "ledger_meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String, nullable=False),
    )
    sa.Table(
        "intake",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("interval", sa.Integer, nullable=False, index=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("wire", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "state_snapshot",
        metadata,
        sa.Column("tree_size", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "household_status",
        metadata,
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("wire", sa.LargeBinary, nullable=False),
    )


def upgrade() -> None:
    conn = op.get_bind()
    metadata = sa.MetaData()
    _tables(metadata)
    metadata.create_all(conn, checkfirst=True)  # each table with its indexes, if missing
    install_append_only_triggers_on(conn, APPEND_ONLY)


def downgrade() -> None:
    raise NotImplementedError("a ledger is never migrated back: restore its backup")
