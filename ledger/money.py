"""Integer money arithmetic: micro-units of the currency, energy in Wh, prices per kWh."""

from __future__ import annotations

__all__ = ["cost_micro"]


def cost_micro(energy_wh: int, price_micro_per_kwh: int) -> int:
    """Money for ``energy_wh`` at ``price_micro_per_kwh``, rounded half up to a micro-unit.

    Every line item is rounded once, and buyer and seller use the same rounded figure,
    so money is conserved exactly.
    """
    if energy_wh < 0:
        return -cost_micro(-energy_wh, price_micro_per_kwh)
    return (energy_wh * price_micro_per_kwh + 500) // 1000


def network_fee_micro(energy_wh: int, price_micro_per_kwh: int, fee_micro_per_kwh: int) -> int:
    """The operator's network fee on one P2P fill of ``energy_wh`` at the buyer's price.

    ``cost(q, p) - cost(q, p - f)``: what the buyer pays minus what the seller nets,
    each rounded once (half up), so buyer, seller and operator balance exactly. It is
    within half a micro-unit of ``q * f / 1000``, never negative, and rounding the
    seller's own price (not the fee) keeps ``cost(q, p - f) >= cost(q, ask)`` for every
    seller whose net price is at or above its ask.
    """
    return cost_micro(energy_wh, price_micro_per_kwh) - cost_micro(
        energy_wh, price_micro_per_kwh - fee_micro_per_kwh
    )
