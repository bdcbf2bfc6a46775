"""Prophet's warm start: a fit started from a previous fit's parameters forecasts as a cold
one does, hands back its own parameters, and a start of the wrong shape falls back to cold."""

from __future__ import annotations

import math
from typing import Any

from wattmesh.forecasting import _prophet

STEP = 3600
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
DAYS = 14


def _history(days: int, shift_days: int = 0) -> tuple[list[int], list[float]]:
    times = [T0 + (shift_days * 24 + i) * STEP for i in range(days * 24)]
    values = [300.0 + 200.0 * math.sin(2 * math.pi * (t % 86_400) / 86_400) for t in times]
    return times, values


def _fit(shift_days: int, warm: dict[str, Any] | None) -> list[float]:
    times, values = _history(DAYS, shift_days)
    return _prophet.fit_predict_with(
        history_epoch_s=times, values_wh=values,
        future_epoch_s=[times[-1] + (h + 1) * STEP for h in range(24)],
        daily_order=10, weekly=True, warm=warm,
    )  # fmt: skip


def test_a_warm_fit_forecasts_like_a_cold_one_and_keeps_its_parameters() -> None:
    warm: dict[str, Any] = {}
    _fit(0, warm)
    assert set(warm) == {"k", "m", "delta", "beta", "sigma_obs"}
    first = dict(warm)
    warmed = _fit(1, warm)  # the next day's refit, started from yesterday's parameters
    cold = _fit(1, None)
    assert len(warmed) == 24
    assert all(math.isfinite(v) for v in warmed)
    assert max(abs(a - b) for a, b in zip(warmed, cold, strict=True)) < 5.0  # Wh of ~500
    assert warm != first  # updated with the new fit's parameters


def test_a_start_of_the_wrong_shape_falls_back_to_a_cold_fit() -> None:
    warm: dict[str, Any] = {}
    _fit(0, warm)
    warm["beta"] = warm["beta"][:3]  # another model's seasonality terms
    forecast = _fit(1, warm)
    cold = _fit(1, None)
    assert max(abs(a - b) for a, b in zip(forecast, cold, strict=True)) < 1e-6
    assert len(warm["beta"]) > 3
