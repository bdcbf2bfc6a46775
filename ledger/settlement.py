"""Settle what was metered against what was traded, per household and interval.

Pure functions. A household's metered net import over an interval is the difference of
its cumulative registers; its traded net is what it bought minus what it sold on the
local market. The deviation is bought from (positive) or sold to (negative) the grid at
the grid's tariffs.

Network fee (docs/protocol.md, "Network fee"): with a fee ``f`` per kWh a fill's price
``p`` is what the buyer pays; the seller's P2P money is the same gross ``cost(q, p)``,
and it pays the operator's fee ``cost(q, p) - cost(q, p - f)`` per fill
(:func:`ledger.money.network_fee_micro`), so it nets ``cost(q, p - f)``: exactly the
clearing's money lines (:mod:`ledger.mechanisms.line_items`). The fee is charged on the
traded (cleared) energy, not on the metered energy: a deviation is grid energy at grid
prices, and a correction of the metered energy never changes the fee.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from wattmesh.broker.connection import energy_limit_wh
from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.money import cost_micro, network_fee_micro

__all__ = ["Basis", "Settlement"]


@dataclass(frozen=True)
class Registers:
    """Cumulative meter registers (Wh) at ``meter_time`` (epoch s)."""

    meter_time: int
    import_wh: int
    export_wh: int


class RegisterError(LedgerError, FailureError, ValueError):
    """Registers that went backwards or do not belong to the interval: the household
    ``agent``, the ``interval`` (epoch s) and the ``problem``."""

    def __init__(self, agent: str, interval: int, problem: str) -> None:
        super().__init__(f"{agent}: {problem}")
        self.agent = agent
        self.interval = interval
        self.problem = problem

    def __reduce__(self) -> tuple[type[RegisterError], tuple[str, int, str]]:
        return (type(self), (self.agent, self.interval, self.problem))


class Basis(StrEnum):
    """What a settlement's energy rests on. The values are part of the log format."""

    METERED = "metered"  # two signed readings bracket the interval
    ESTIMATED = "estimated"  # a reading is missing: see ledger.metering for the rule


class FlagReason(StrEnum):
    """Why a household's interval was flagged and not settled (part of the log format)."""

    REGISTER_BACKWARDS = "register_backwards"  # import or export register decreased
    METER_TIME_BACKWARDS = "meter_time_backwards"  # reading not later than the previous one
    BEYOND_LIMIT = "beyond_limit"  # more energy than the connection can carry


def check_registers(
    start: Registers, end: Registers, *, max_power_w: int, elapsed_s: int
) -> FlagReason | None:
    """Why the registers from ``start`` to ``end`` cannot be settled, or None if they can.

    ``elapsed_s`` is the time between the intervals the two readings belong to (their
    headers' interval starts, never the meter's clock, which could widen the bound at
    will). Import plus export may not exceed what ``max_power_w`` carries in that time
    (the connection carries power one way at a time); the meter time must advance.
    """
    import_wh = end.import_wh - start.import_wh
    export_wh = end.export_wh - start.export_wh
    if import_wh < 0 or export_wh < 0:
        return FlagReason.REGISTER_BACKWARDS
    if end.meter_time <= start.meter_time:
        return FlagReason.METER_TIME_BACKWARDS
    if import_wh + export_wh > energy_limit_wh(max_power_w, max(elapsed_s, 0)):
        return FlagReason.BEYOND_LIMIT
    return None


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
    network_fee_micro: int = 0  # the seller's network fee on its P2P sales (to the operator)

    @property
    def cost_micro(self) -> int:
        """What the household pays in all (negative: receives), fee included."""
        return self.p2p_cost_micro + self.grid_cost_micro + self.network_fee_micro

    def to_json(self) -> dict[str, int | str]:
        """As logged; ``network_fee_micro`` only when it is not 0 (so the entries of a
        market without a fee, and their roots, are what they were before fees)."""
        obj: dict[str, int | str] = {
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
        if self.network_fee_micro:
            obj["network_fee_micro"] = self.network_fee_micro
        return obj


def settle_household(
    *,
    agent: str,
    interval: int,
    start: Registers,
    end: Registers,
    fills: Iterable[Fill],
    tariff: GridTariff,
    network_fee_micro_per_kwh: int = 0,
) -> Settlement:
    """Settle ``agent`` for ``interval`` from its registers at both ends and its fills."""
    import_wh = end.import_wh - start.import_wh
    export_wh = end.export_wh - start.export_wh
    if import_wh < 0 or export_wh < 0:
        raise RegisterError(agent, interval, f"a register went backwards in interval {interval}")
    if end.meter_time <= start.meter_time:
        raise RegisterError(agent, interval, f"readings out of order in interval {interval}")
    return settle_flows(
        agent=agent,
        interval=interval,
        import_wh=import_wh,
        export_wh=export_wh,
        fills=fills,
        tariff=tariff,
        network_fee_micro_per_kwh=network_fee_micro_per_kwh,
    )


def settle_flows(
    *,
    agent: str,
    interval: int,
    import_wh: int,
    export_wh: int,
    fills: Iterable[Fill],
    tariff: GridTariff,
    network_fee_micro_per_kwh: int = 0,
) -> Settlement:
    """Settle ``agent`` for ``interval`` from its metered (or estimated) energy flows.

    ``network_fee_micro_per_kwh`` is the market's fee ``f``: the seller of each fill
    pays ``network_fee_micro(q, p, f)`` of it (see the module docstring)."""
    return with_energy(
        traded_position(agent, interval, fills, network_fee_micro_per_kwh),
        import_wh=import_wh,
        export_wh=export_wh,
        tariff=tariff,
    )


def traded_position(
    agent: str, interval: int, fills: Iterable[Fill], network_fee_micro_per_kwh: int = 0
) -> Settlement:
    """``agent``'s trades of ``interval`` and their money, with no metered energy yet."""
    if network_fee_micro_per_kwh < 0:
        raise ValueError("the network fee must not be negative")
    bought_wh = sold_wh = p2p_cost = fee = 0
    for fill in fills:
        if fill.buyer == agent:
            bought_wh += fill.quantity_wh
            p2p_cost += cost_micro(fill.quantity_wh, fill.price_micro_per_kwh)
        if fill.seller == agent:
            sold_wh += fill.quantity_wh
            p2p_cost -= cost_micro(fill.quantity_wh, fill.price_micro_per_kwh)
            fee += network_fee_micro(
                fill.quantity_wh, fill.price_micro_per_kwh, network_fee_micro_per_kwh
            )
    return Settlement(agent, interval, 0, 0, bought_wh, sold_wh, 0, 0, p2p_cost, 0, 0, fee)


def with_energy(
    settlement: Settlement, *, import_wh: int, export_wh: int, tariff: GridTariff
) -> Settlement:
    """``settlement`` for other metered energy: the trades stay, the grid part follows."""
    if import_wh < 0 or export_wh < 0:
        raise RegisterError(
            settlement.agent, settlement.interval, f"negative energy in {settlement.interval}"
        )
    deviation_wh = (import_wh - export_wh) - (settlement.bought_wh - settlement.sold_wh)
    grid_buy_wh = max(deviation_wh, 0)
    grid_sell_wh = max(-deviation_wh, 0)
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    return Settlement(
        agent=settlement.agent,
        interval=settlement.interval,
        import_wh=import_wh,
        export_wh=export_wh,
        bought_wh=settlement.bought_wh,
        sold_wh=settlement.sold_wh,
        grid_buy_wh=grid_buy_wh,
        grid_sell_wh=grid_sell_wh,
        p2p_cost_micro=settlement.p2p_cost_micro,
        grid_cost_micro=cost_micro(grid_buy_wh, retail) - cost_micro(grid_sell_wh, feed_in),
        grid_only_cost_micro=cost_micro(import_wh, retail) - cost_micro(export_wh, feed_in),
        network_fee_micro=settlement.network_fee_micro,
    )
