"""The ``market_params`` log entry: the mechanism and metering rules a ledger runs with.

Logged (docs/protocol.md, "Market parameters") as the first entry after the checkpoint
reference of the first close after a start of the ledger whose parameters are not the
last ones logged (they change only with a restart), so that ``ledger verify``
re-executes the market from the log alone (:mod:`ledger.replay`): the mechanism's name,
``k`` (uniform and pay-as-bid), the network fee, the metering rules that decide
settlements and flags (each connection's limit, the backfill window) and the tariff
schedule, when the ledger is given one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlmodel import Session, col, select

from wattmesh.broker.messages import canonical_bytes
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import EntryKind, NewEntry
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import USES_K, Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule, TouPeriod
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.store import LedgerStore, LogEntry

__all__ = [
    "MarketParams",
    "market_params_entry",
    "mechanism_of",
    "params_logged",
    "parse_market_params",
]

_KEYS = frozenset(
    {
        "kind",
        "interval",
        "mechanism",
        "network_fee_micro_per_kwh",
        "default_max_power_w",
        "max_power_w",
        "backfill_window_s",
        "tariffs",
    }
)


@dataclass(frozen=True)
class MarketParams:
    """What a ``market_params`` entry says. ``tariffs``: the schedule every interval's
    tariff must follow, None when the ledger was not given one (the tariff each
    clearing entry names is then the only record)."""

    mechanism: Mechanism
    metering: MeteringConfig
    tariffs: TariffSchedule | None = None

    def check_tariff(self, interval: int, tariff: GridTariff) -> None:
        """ValueError unless ``tariff`` is the schedule's for ``interval`` (if any)."""
        if self.tariffs is not None and self.tariffs.at(interval) != tariff:
            raise ValueError(f"{tariff} is not the tariff schedule's for {interval}")


def market_params_entry(interval: int, params: MarketParams) -> NewEntry:
    metering, tariffs = params.metering, params.tariffs
    obj: dict[str, Any] = {
        "kind": EntryKind.MARKET_PARAMS,
        "interval": interval,
        **params.mechanism.to_json(),
        "default_max_power_w": metering.default_max_power_w,
        "max_power_w": dict(sorted(metering.max_power_w.items())),
        "backfill_window_s": metering.backfill_window_s,
        "tariffs": None if tariffs is None else [_period(p) for p in tariffs.periods],
    }
    return NewEntry(EntryKind.MARKET_PARAMS, interval, None, None, canonical_bytes(obj))


def _period(period: TouPeriod) -> dict[str, int]:
    return {
        "start_hour_utc": period.start_hour_utc,
        "retail_micro_per_kwh": period.tariff.retail_micro_per_kwh,
        "feed_in_micro_per_kwh": period.tariff.feed_in_micro_per_kwh,
    }


def _int(obj: dict[str, Any], name: str, low: int) -> int:
    value = obj.get(name)
    if type(value) is not int or value < low:
        raise ValueError(f"{name} must be an integer >= {low}")
    return value


def mechanism_of(obj: dict[str, Any]) -> Mechanism:
    """The mechanism a ``market_params`` or ``clearing`` entry names (a clearing entry
    without a ``mechanism`` field names the default); ValueError when malformed."""
    if "mechanism" not in obj:
        return Mechanism()
    name = obj["mechanism"]
    if type(name) is not str:
        raise ValueError("mechanism must be a name")
    k = Fraction(1, 2)
    if name in USES_K:
        text = obj.get("k")
        if type(text) is not str or text.count("/") != 1:
            raise ValueError("k must be a fraction 'n/d'")
        try:
            k = Fraction(text)
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"k is not a fraction: {text!r}") from exc
    elif "k" in obj:
        raise ValueError(f"k does not apply to {name}")
    fee = _int(obj, "network_fee_micro_per_kwh", 0)
    return Mechanism(name, MarketRules(k=k, network_fee_micro_per_kwh=fee))


def parse_market_params(obj: dict[str, Any]) -> MarketParams:
    """Read a logged ``market_params`` entry; ValueError naming what is malformed."""
    extra = set(obj) - _KEYS - {"k"}
    if extra or not set(obj) >= _KEYS:
        raise ValueError(f"fields must be {sorted(_KEYS)} (and k)")
    _int(obj, "interval", 0)
    limits = obj["max_power_w"]
    if not isinstance(limits, dict) or any(type(w) is not int or w < 1 for w in limits.values()):
        raise ValueError("max_power_w must map households to integers >= 1")
    config = MeteringConfig(
        default_max_power_w=_int(obj, "default_max_power_w", 1),
        max_power_w=dict(limits),
        backfill_window_s=_int(obj, "backfill_window_s", 0),
    )
    rows = obj["tariffs"]
    if rows is not None and not isinstance(rows, list):
        raise ValueError("tariffs must be null or a list of periods")
    tariffs = None if rows is None else TariffSchedule.from_json(rows)
    return MarketParams(mechanism_of(obj), config, tariffs)


def params_logged(store: LedgerStore, params: MarketParams) -> bool:
    """Whether the last ``market_params`` entry of ``store``'s log says these parameters
    (one query at start; the ledger logs them at its first close if not)."""
    query = (
        select(LogEntry.data)
        .where(LogEntry.kind == EntryKind.MARKET_PARAMS)
        .order_by(col(LogEntry.idx).desc())
        .limit(1)
    )
    with Session(store.engine) as session:
        data = session.exec(query).first()
    if data is None:
        return False
    try:
        logged = parse_market_params(json.loads(data))
    except ValueError:
        return False
    return logged == params
