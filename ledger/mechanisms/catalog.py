"""Mechanisms by name, and the :class:`Mechanism` a market is configured with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from wattmesh.ledger.clearing import ClearingResult, GridTariff, Order
from wattmesh.ledger.mechanisms._auctions import (
    clear_pay_as_bid,
    clear_uniform_price,
    uniform_local,
)
from wattmesh.ledger.mechanisms._community import clear_mmr, clear_sdr
from wattmesh.ledger.mechanisms.base import MarketResult, MarketRules

__all__ = ["MECHANISMS", "USES_K", "Mechanism"]

MechanismFn = Callable[[Sequence[Order], GridTariff, MarketRules], MarketResult]

MECHANISMS: MappingProxyType[str, MechanismFn] = MappingProxyType(
    {
        "uniform": clear_uniform_price,
        "pay-as-bid": clear_pay_as_bid,
        "sdr": clear_sdr,
        "mmr": clear_mmr,
    }
)
USES_K = frozenset({"uniform", "pay-as-bid"})


@dataclass(frozen=True)
class Mechanism:
    """A market's clearing rule: a name from :data:`MECHANISMS` and its rules.

    The default (uniform, k = 1/2, no fee) is what every ledger used before mechanisms
    were selectable; its clearing log entries carry no ``mechanism`` field.
    """

    name: str = "uniform"
    rules: MarketRules = field(default_factory=MarketRules)

    def __post_init__(self) -> None:
        if self.name not in MECHANISMS:
            known = ", ".join(MECHANISMS)
            raise ValueError(f"unknown mechanism {self.name!r} (known: {known})")
        if self.name not in USES_K and self.rules.k != Fraction(1, 2):
            raise ValueError(f"k applies to uniform and pay-as-bid, not {self.name}")

    @property
    def is_default(self) -> bool:
        return self == Mechanism()

    def clear(self, orders: Sequence[Order], tariff: GridTariff) -> MarketResult:
        return MECHANISMS[self.name](orders, tariff, self.rules)

    def clear_local(self, orders: Sequence[Order], tariff: GridTariff) -> ClearingResult:
        """Only the local part (what the ledger logs and settles from metering).

        Uniform pricing skips the grid rests (the same result, tested; a third less
        time at 100,000 orders: BENCHMARKS.md, "Market mechanisms").
        """
        if self.name == "uniform":
            return uniform_local(orders, tariff, self.rules)
        return self.clear(orders, tariff).clearing

    def to_json(self) -> dict[str, Any]:
        """As logged in clearing entries: ``mechanism`` (name), ``k`` "n/d" (if used), fee."""
        obj: dict[str, Any] = {
            "mechanism": self.name,
            "network_fee_micro_per_kwh": self.rules.network_fee_micro_per_kwh,
        }
        if self.name in USES_K:
            obj["k"] = f"{self.rules.k.numerator}/{self.rules.k.denominator}"
        return obj
