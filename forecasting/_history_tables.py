"""The SQL tables of ``forecast serve``'s own database (:mod:`forecasting.history`)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text

__all__ = ["CHOICE", "EPISODES", "FITS", "META", "PAST", "READINGS", "SETTLED", "STATE"]

META = MetaData()
READINGS = Table(
    "forecast_reading",
    META,
    Column("agent", String(64), primary_key=True),
    Column("meter_time", BigInteger, primary_key=True, autoincrement=False),
    Column("log_idx", BigInteger, nullable=False),
    Column("interval", BigInteger, nullable=False),  # the signed header's interval
    Column("flagged", Boolean, nullable=False, default=False),  # by the ledger: not learnt
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("pv_wh", BigInteger, nullable=False),
    Column("battery_in_wh", BigInteger),
    Column("battery_out_wh", BigInteger),
)
FITS = Table(
    "forecast_fit",
    META,
    Column("agent", String(64), primary_key=True),
    Column("fitted_s", BigInteger, nullable=False),
    Column("trained_size", BigInteger),
    Column("trained_root", String(64)),
    Column("data", Text, nullable=False),  # JSON: both targets' Fitted
)
SETTLED = Table(
    "forecast_settled",
    META,
    Column("agent", String(64), primary_key=True),
    Column("interval", BigInteger, primary_key=True, autoincrement=False),
    Column("export_wh", BigInteger, nullable=False),  # metered
    Column("sold_wh", BigInteger, nullable=False),  # P2P
)
EPISODES = Table(
    "forecast_episode",
    META,
    Column("agent", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("interval", BigInteger, primary_key=True, autoincrement=False),  # as published
    Column("window_start", BigInteger, nullable=False),  # evidence window, widened by
    Column("window_end", BigInteger, nullable=False),  # later flags overlapping it
)
PAST = Table(
    "forecast_past",
    META,
    Column("agent", String(64), primary_key=True),
    Column("target", String(16), primary_key=True),
    Column("interval", BigInteger, primary_key=True, autoincrement=False),  # its start, epoch s
    Column("version", String(120), nullable=False),  # the model and version that made it
    Column("p50_wh", BigInteger, nullable=False),
)
CHOICE = Table(
    "forecast_choice",
    META,
    Column("agent", String(64), primary_key=True),
    Column("target", String(16), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("chosen_s", BigInteger, nullable=False),
)
STATE = Table(
    "forecast_state",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("log_position", BigInteger, nullable=False),  # log entries read so far
    Column("tree_size", BigInteger),
    Column("root", String(64)),
)
