"""The read model's tables: SQLAlchemy Core, in a MetaData of their own.

The dashboard's query tables, derived from the ledger's log (and, for rejections,
forecasts, presence and health, from the bus). In PostgreSQL they live in the schema
:data:`PG_SCHEMA` (through the engine's ``schema_translate_map``); in SQLite, in a file
of their own. Energy in Wh, money in micro-units, time in epoch seconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["ADDED_COLUMNS", "LOG_TABLES", "METADATA", "PG_SCHEMA"]

PG_SCHEMA = "wattmesh_dashboard"

METADATA = MetaData()


def _int(name: str, *, nullable: bool = False, default: int | None = 0) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable, default=default)


def _key(name: str) -> Column[int]:
    return Column(name, BigInteger, primary_key=True, autoincrement=False)


SUM_COLUMNS = (
    "households",
    "import_wh",
    "export_wh",
    "bought_wh",
    "sold_wh",
    "grid_buy_wh",
    "grid_sell_wh",
    "cost_micro",
    "grid_only_cost_micro",
    "fee_micro",
    "flagged",
    "settled",
)
"""The columns of ``interval_stats`` summed from the interval's household rows."""

interval_stats = Table(
    "interval_stats",
    METADATA,
    _key("interval"),
    _int("price_micro_per_kwh", nullable=True, default=None),
    _int("retail_micro_per_kwh", nullable=True, default=None),
    _int("feed_in_micro_per_kwh", nullable=True, default=None),
    Column("mechanism", String(64), nullable=True),
    _int("orders"),
    _int("rejected"),
    _int("trades"),
    _int("volume_wh"),
    *(_int(name) for name in SUM_COLUMNS),
    _int("closed_idx", nullable=True, default=None),
)

HOUSEHOLD_FIGURES = (
    "import_wh",
    "export_wh",
    "bought_wh",
    "sold_wh",
    "p2p_cost_micro",
    "grid_cost_micro",
    "fee_micro",
    "grid_only_cost_micro",
    "corrections",
    "posted_micro",
    "fee_posted_micro",
    "grid_buy_wh",
    "grid_sell_wh",
    "covered_wh",
)
"""The integer figures of a ``household_interval`` row (``covered_wh``: the part of its
import that the neighbourhood's export covered in the interval, pro rata)."""

household_interval = Table(
    "household_interval",
    METADATA,
    Column("household", String(128), primary_key=True),
    _key("interval"),
    Column("basis", String(16), nullable=False),
    _int("price_micro_per_kwh", nullable=True, default=None),
    _int("retail_micro_per_kwh", nullable=True, default=None),
    _int("feed_in_micro_per_kwh", nullable=True, default=None),
    *(_int(name) for name in HOUSEHOLD_FIGURES),
    Column("flag_reason", String(64), nullable=False, default=""),
    Index("ix_household_interval_interval", "interval"),
)

TOTAL_COLUMNS = (
    "intervals",
    "import_wh",
    "export_wh",
    "bought_wh",
    "sold_wh",
    "cost_micro",
    "grid_only_cost_micro",
    "covered_wh",
)

household_total = Table(
    "household_total",
    METADATA,
    Column("household", String(128), primary_key=True),
    *(_int(name) for name in TOTAL_COLUMNS),
)
"""Pre-aggregated: each household's ``household_interval`` rows summed (kept by the fold
as the difference each batch makes), so the households table reads 500 rows, not 1.4 M."""

trade = Table(
    "trade",
    METADATA,
    _key("idx"),
    _int("interval"),
    Column("buyer", String(128), nullable=False),
    Column("seller", String(128), nullable=False),
    _int("quantity_wh"),
    _int("price_micro_per_kwh"),
    Index("ix_trade_interval", "interval"),
    Index("ix_trade_buyer", "buyer", "idx"),
    Index("ix_trade_seller", "seller", "idx"),
)

book_order = Table(
    "book_order",
    METADATA,
    _key("idx"),
    _int("interval"),
    Column("household", String(128), nullable=False),
    Column("side", String(4), nullable=False),
    _int("quantity_wh"),
    _int("price_micro_per_kwh"),
    Index("ix_book_order_interval", "interval"),
)

checkpoint = Table(
    "checkpoint",
    METADATA,
    _key("tree_size"),
    _int("interval"),
    Column("root", LargeBinary, nullable=False),
    Column("kid", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

household = Table(
    "household",
    METADATA,
    Column("id", String(128), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("public_key_der", LargeBinary, nullable=False),
    _int("first_interval"),
    Column("revoked", Integer, nullable=False, default=0),
)

anomaly = Table(
    "anomaly",
    METADATA,
    Column("household", String(128), primary_key=True),
    _key("interval"),
    Column("kind", String(64), primary_key=True),
    Column("detail", Text, nullable=False, default=""),
    Column("source", String(16), nullable=False),  # log (flag), forecaster, bus
    Index("ix_anomaly_interval", "interval"),
)

rejection = Table(
    "rejection",
    METADATA,
    _key("interval"),
    Column("reason", String(64), primary_key=True),
    _int("count"),
)

forecast = Table(
    "forecast",
    METADATA,
    Column("household", String(128), primary_key=True),
    _key("interval"),
    _int("demand_wh"),
    _int("pv_wh"),
    _int("demand_p10_wh", nullable=True, default=None),
    _int("demand_p90_wh", nullable=True, default=None),
    Column("model", String(64), nullable=False),
    _int("issued_s"),
    _int("pv_p10_wh", nullable=True, default=None),
    _int("pv_p90_wh", nullable=True, default=None),
    Column("version", String(64), nullable=True),
    _int("trained_on_size", nullable=True, default=None),
    Column("trained_on_root", String(64), nullable=True),
    Index("ix_forecast_interval", "interval"),  # the market's neighbourhood sums by range
)
"""The first step of each forecast heard (its interval's): medians, 10 % and 90 %
quantiles, the model and version, the checkpoint its training data reaches. The
columns after ``issued_s`` came later: :data:`ADDED_COLUMNS`."""

ADDED_COLUMNS = {
    "forecast": ("pv_p10_wh", "pv_p90_wh", "version", "trained_on_size", "trained_on_root")
}
"""Nullable columns added to a table after its first release: a read model created
before gets them with ``ALTER TABLE ... ADD COLUMN`` when it is opened."""

forecast_total = Table(
    "forecast_total",
    METADATA,
    _key("interval"),
    _int("net_wh"),  # Σ (demand_wh - pv_wh) of the interval's forecast rows
    _int("households"),  # how many rows
)
"""The neighbourhood's forecast per interval, kept up with each forecast row written
(the market's 30-day series reads 2,880 rows instead of summing 1.44 M)."""

presence = Table(
    "presence",
    METADATA,
    Column("household", String(128), primary_key=True),
    Column("online", Integer, nullable=False),
    _int("since_s"),
)

sync_state = Table(
    "sync_state",
    METADATA,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

LOG_TABLES = (
    interval_stats,
    household_interval,
    household_total,
    trade,
    book_order,
    checkpoint,
    household,
)
"""The tables derived from the log alone: a rebuild drops and refills them."""
