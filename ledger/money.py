"""Integer money arithmetic: micro-units of the currency, energy in Wh, prices per kWh."""

from __future__ import annotations


def cost_micro(energy_wh: int, price_micro_per_kwh: int) -> int:
    """Money for ``energy_wh`` at ``price_micro_per_kwh``, rounded half up to a micro-unit.

    Every line item is rounded once, and buyer and seller use the same rounded figure,
    so money is conserved exactly.
    """
    if energy_wh < 0:
        return -cost_micro(-energy_wh, price_micro_per_kwh)
    return (energy_wh * price_micro_per_kwh + 500) // 1000
