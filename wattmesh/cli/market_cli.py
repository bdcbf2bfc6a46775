"""``wattmesh market clear``: clear a JSON order book offline with a named mechanism.

Input and output formats and exit codes are in docs/protocol.md ("wattmesh market
clear"). Every problem with the file raises :class:`MarketInputError` with one line
naming where and why; the CLI prints it on stderr and exits 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from wattmesh.broker.errors import CommandError
from wattmesh.broker.messages import MAX_PRICE_MICRO_PER_KWH, MAX_QUANTITY_WH, Side
from wattmesh.ledger.clearing import GridTariff, Order
from wattmesh.ledger.mechanisms.base import MarketResult, MarketRules
from wattmesh.ledger.mechanisms.catalog import MECHANISMS, USES_K, Mechanism
from wattmesh.ledger.mechanisms.line_items import Account, net_by_account, postings
from wattmesh.ledger.money import cost_micro

_TOP_REQUIRED = {"grid", "orders"}
_TOP_OPTIONAL = {"k", "network_fee_micro_per_kwh"}
_GRID_KEYS = {"retail_micro_per_kwh", "feed_in_micro_per_kwh"}
_ORDER_KEYS = {"id", "side", "quantity_wh", "price_micro_per_kwh"}
_K = re.compile(r"(\d{1,9})(?:/(\d{1,9}))?")
_MAX_ID = 200


class MarketInputError(CommandError):
    """An order book file that cannot be cleared, with the place and the reason."""


def _parse_int(value: str) -> int:
    if len(value) > 32:
        raise MarketInputError(f"integer with {len(value)} characters")
    return int(value)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MarketInputError(f"duplicate JSON key {key!r}")
        obj[key] = value
    return obj


def _reject_float(value: str) -> Any:
    raise MarketInputError(f"non-integer number {value} (amounts are integers)")


def _reject_constant(value: str) -> Any:
    raise MarketInputError(f"invalid JSON constant {value}")


def _int(obj: Mapping[str, Any], key: str, where: str, maximum: int) -> int:
    value = obj[key]
    if type(value) is not int:
        raise MarketInputError(f"{where}.{key}: must be an integer, got {json.dumps(value)}")
    if not 0 <= value <= maximum:
        raise MarketInputError(f"{where}.{key}: must be in 0..{maximum}, got {value}")
    return value


def _fields(
    obj: Any, where: str, required: set[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MarketInputError(f"{where}: must be an object")
    missing = sorted(required - set(obj))
    unknown = sorted(set(obj) - required - optional)
    if missing:
        raise MarketInputError(f"{where}: missing field {missing[0]!r}")
    if unknown:
        raise MarketInputError(f"{where}: unknown field {unknown[0]!r}")
    return obj


def _k(value: Any) -> Fraction:
    match = _K.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MarketInputError(f'k: must be a string "n/d" or "n", got {json.dumps(value)}')
    den = int(match.group(2) or 1)
    if den == 0:
        raise MarketInputError("k: zero denominator")
    k = Fraction(int(match.group(1)), den)
    if k > 1:
        raise MarketInputError(f"k: must lie in [0, 1], got {value}")
    return k


def parse_book(text: str, mechanism_name: str) -> tuple[Mechanism, GridTariff, list[Order]]:
    """Parse and check a book; raise MarketInputError naming the first problem."""
    if mechanism_name not in MECHANISMS:
        raise MarketInputError(
            f"unknown mechanism {mechanism_name!r} (known: {', '.join(MECHANISMS)})"
        )
    try:
        obj = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MarketInputError(f"not JSON: {str(exc)[:200]}") from exc
    top = _fields(obj, "book", _TOP_REQUIRED, frozenset(_TOP_OPTIONAL))
    grid = _fields(top["grid"], "grid", _GRID_KEYS)
    retail = _int(grid, "retail_micro_per_kwh", "grid", MAX_PRICE_MICRO_PER_KWH)
    feed_in = _int(grid, "feed_in_micro_per_kwh", "grid", MAX_PRICE_MICRO_PER_KWH)
    if feed_in > retail:
        raise MarketInputError("grid: feed_in_micro_per_kwh must not exceed retail_micro_per_kwh")
    fee = (
        _int(top, "network_fee_micro_per_kwh", "book", MAX_PRICE_MICRO_PER_KWH)
        if "network_fee_micro_per_kwh" in top
        else 0
    )
    k = _k(top["k"]) if "k" in top else Fraction(1, 2)
    if "k" in top and mechanism_name not in USES_K:
        raise MarketInputError(
            f"k: applies to {' and '.join(sorted(USES_K))}, not {mechanism_name}"
        )
    if not isinstance(top["orders"], list):
        raise MarketInputError("orders: must be a list")
    orders: list[Order] = []
    seen: set[str] = set()
    for i, raw in enumerate(top["orders"]):
        where = f"orders[{i}]"
        o = _fields(raw, where, _ORDER_KEYS)
        oid = o["id"]
        if not isinstance(oid, str) or not 0 < len(oid) <= _MAX_ID:
            raise MarketInputError(f"{where}.id: must be a string of 1..{_MAX_ID} characters")
        if oid in seen:
            raise MarketInputError(f"{where}.id: duplicate id {oid!r}")
        seen.add(oid)
        if o["side"] not in ("buy", "sell"):
            raise MarketInputError(
                f'{where}.side: must be "buy" or "sell", got {json.dumps(o["side"])}'
            )
        quantity = _int(o, "quantity_wh", where, MAX_QUANTITY_WH)
        price = _int(o, "price_micro_per_kwh", where, MAX_PRICE_MICRO_PER_KWH)
        orders.append(Order(oid, Side(o["side"]), quantity, price, oid))
    mechanism = Mechanism(mechanism_name, MarketRules(k=k, network_fee_micro_per_kwh=fee))
    return mechanism, GridTariff(retail, feed_in), orders


def result_json(mechanism: Mechanism, result: MarketResult) -> dict[str, Any]:
    """The output document (each order's id is its own account)."""
    fee = result.network_fee_micro_per_kwh
    net = net_by_account(postings(result))
    households = {agent: amount for (acc, agent), amount in net.items() if acc is Account.HOUSEHOLD}
    return {
        **mechanism.to_json(),
        "price_micro_per_kwh": result.price_micro_per_kwh,
        "volume_wh": result.volume_wh,
        "trades": [
            {
                "buy": f.buy_ref,
                "sell": f.sell_ref,
                "quantity_wh": f.quantity_wh,
                "price_micro_per_kwh": f.price_micro_per_kwh,
                "seller_net_micro_per_kwh": f.price_micro_per_kwh - fee,
                "cost_micro": cost_micro(f.quantity_wh, f.price_micro_per_kwh),
            }
            for f in result.fills
        ],
        "grid": [
            {
                "order": g.order_ref,
                "side": g.side.value,
                "quantity_wh": g.quantity_wh,
                "price_micro_per_kwh": g.price_micro_per_kwh,
                "cost_micro": cost_micro(g.quantity_wh, g.price_micro_per_kwh),
            }
            for g in result.grid
        ],
        "accounts_micro": {
            "orders": dict(sorted(households.items())),
            "grid": net[(Account.GRID, "")],
            "operator": net[(Account.OPERATOR, "")],
        },
    }


def run_market_clear_command(mechanism_name: str, path: Path) -> int:
    """Clear the book in ``path``, print the result as JSON; MarketInputError when invalid."""
    if mechanism_name not in MECHANISMS:
        known = ", ".join(MECHANISMS)
        raise MarketInputError(f"unknown mechanism {mechanism_name!r} (known: {known})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MarketInputError(f"cannot read {path}: {exc}") from exc
    try:
        mechanism, tariff, orders = parse_book(text, mechanism_name)
    except MarketInputError as exc:
        raise MarketInputError(f"{path}: {exc}") from exc
    # One line (the C encoder; indenting 100,000 trades in pure Python takes seconds).
    print(json.dumps(result_json(mechanism, mechanism.clear(orders, tariff))))
    return 0
