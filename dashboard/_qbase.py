"""What the dashboard's read functions share: their errors, limits and small readers."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from wattmesh.broker.errors import DashboardError
from wattmesh.dashboard import _tables as t

__all__ = ["FORECASTER_HEALTH", "BadRequest", "NotFound", "forecaster_json"]

MAX_LIMIT = 10_000


class NotFound(DashboardError, LookupError):
    """No such household, interval or log entry (HTTP 404)."""


class BadRequest(DashboardError, ValueError):
    """A parameter out of range (HTTP 400)."""


def _state(conn: Connection, *keys: str) -> dict[str, str | None]:
    table = t.sync_state
    rows = dict(conn.execute(select(table.c.key, table.c.value).where(table.c.key.in_(keys))).all())
    return {key: rows.get(key) for key in keys}


def _json_state(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole > 0 else 0.0


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _trade_json(row: Any) -> dict[str, Any]:
    return {
        "idx": row.idx,
        "interval": row.interval,
        "buyer": row.buyer,
        "seller": row.seller,
        "quantity_wh": row.quantity_wh,
        "price_micro_per_kwh": row.price_micro_per_kwh,
    }


def _known(conn: Connection, household: str) -> None:
    found = conn.execute(select(t.household.c.id).where(t.household.c.id == household)).first()
    if found is None:
        raise NotFound(f"no household {household!r} in the log")


FORECASTER_HEALTH = "forecaster_health"
"""The ``sync_state`` key of the forecasting service's last verified health."""


def forecaster_json(
    body: dict[str, Any] | None, *, heard_s: int | None, now_s: int
) -> dict[str, Any]:
    """The forecasting service's health as shown: its last signed ``health`` body (or
    ``state`` "not heard" when none came), when it was heard and how long ago."""
    if body is None or heard_s is None:
        return {
            "configured": True, "heard": False, "state": "not heard", "started_s": None,
            "last_refit_s": None, "households": None, "counters": None, "trained_on": None,
            "heard_s": None, "age_s": None,
        }  # fmt: skip
    counters = dict(body["counters"])
    return {
        "configured": True,
        "heard": True,
        "state": body["state"],
        "started_s": body["started_s"],
        "last_refit_s": body["last_refit_s"],
        "households": counters.get("households"),
        "counters": counters,
        "trained_on": body["trained_on"],
        "heard_s": heard_s,
        "age_s": max(now_s - heard_s, 0),
    }
