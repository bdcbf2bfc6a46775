"""Settle what was metered against what was traded, per household and interval.

Pure functions. A household's metered net import over an interval is the difference of
its cumulative registers; its traded net is what it bought minus what it sold on the
local market. The deviation is bought from (positive) or sold to (negative) the grid at
the grid's tariffs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.clearing import Fill, GridTariff
from ledger.money import cost_micro


@dataclass(frozen=True)
class Registers:
    """Cumulative meter registers (Wh) at ``meter_time`` (epoch s)."""

    meter_time: int
    import_wh: int
    export_wh: int


class RegisterError(ValueError):
    """Registers that went backwards or do not belong to the interval."""


@dataclass(frozen=True)
class Settlement:
    """One household's bill for one interval. Money is in micro-units; positive = pays."""

    agent: str
    interval: int
    import_wh: int
    export_wh: int
    bought_wh: int
    sold_wh: int
    grid_buy_wh: int
    grid_sell_wh: int
    p2p_cost_micro: int
    grid_cost_micro: int
    grid_only_cost_micro: int  # what the same metered energy would cost with the grid alone

    @property
    def cost_micro(self) -> int:
        return self.p2p_cost_micro + self.grid_cost_micro

    def to_json(self) -> dict[str, int | str]:
        return {
            "agent": self.agent,
            "interval": self.interval,
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "bought_wh": self.bought_wh,
            "sold_wh": self.sold_wh,
            "grid_buy_wh": self.grid_buy_wh,
            "grid_sell_wh": self.grid_sell_wh,
            "p2p_cost_micro": self.p2p_cost_micro,
            "grid_cost_micro": self.grid_cost_micro,
            "grid_only_cost_micro": self.grid_only_cost_micro,
        }


def settle_household(
    *,
    agent: str,
    interval: int,
    start: Registers,
    end: Registers,
    fills: Iterable[Fill],
    tariff: GridTariff,
) -> Settlement:
    """Settle ``agent`` for ``interval`` from its registers at both ends and its fills."""
    import_wh = end.import_wh - start.import_wh
    export_wh = end.export_wh - start.export_wh
    if import_wh < 0 or export_wh < 0:
        raise RegisterError(f"{agent}: a register went backwards in interval {interval}")
    if end.meter_time <= start.meter_time:
        raise RegisterError(f"{agent}: readings out of order in interval {interval}")
    bought_wh = sold_wh = p2p_cost = 0
    for fill in fills:
        if fill.buyer == agent:
            bought_wh += fill.quantity_wh
            p2p_cost += cost_micro(fill.quantity_wh, fill.price_micro_per_kwh)
        if fill.seller == agent:
            sold_wh += fill.quantity_wh
            p2p_cost -= cost_micro(fill.quantity_wh, fill.price_micro_per_kwh)
    deviation_wh = (import_wh - export_wh) - (bought_wh - sold_wh)
    grid_buy_wh = max(deviation_wh, 0)
    grid_sell_wh = max(-deviation_wh, 0)
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    return Settlement(
        agent=agent,
        interval=interval,
        import_wh=import_wh,
        export_wh=export_wh,
        bought_wh=bought_wh,
        sold_wh=sold_wh,
        grid_buy_wh=grid_buy_wh,
        grid_sell_wh=grid_sell_wh,
        p2p_cost_micro=p2p_cost,
        grid_cost_micro=cost_micro(grid_buy_wh, retail) - cost_micro(grid_sell_wh, feed_in),
        grid_only_cost_micro=cost_micro(import_wh, retail) - cost_micro(export_wh, feed_in),
    )
