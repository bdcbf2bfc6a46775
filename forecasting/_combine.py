"""Combinations of models: the mean of the two best, and an inverse-error weighted blend.

"Best" and the weights come from each member's own calibration errors (its day-ahead
errors over the last days of the history), so a combination chooses afresh at every origin
from what the history alone shows. Members that fell back are left out while others ran.
"""

from __future__ import annotations

from collections.abc import Sequence

from wattmesh.forecasting._intervals import PointRun

__all__ = ["blend", "calib_mae"]


def calib_mae(run: PointRun, history_wh: Sequence[int], length: int) -> float:
    """Mean absolute calibration error of ``run`` over the last ``length`` intervals."""
    if length == 0:
        return float("inf")
    actual = history_wh[len(history_wh) - length :]
    calib = run.calib[len(run.calib) - length :]
    return sum(abs(a - f) for a, f in zip(actual, calib, strict=True)) / length


def blend(
    members: Sequence[PointRun], history_wh: Sequence[int], *, model: str, best: int | None
) -> PointRun:
    """Weighted mean of ``members``: the ``best`` lowest-error ones equally weighted, or (with
    ``best=None``) all of them with weights proportional to 1 / calibration MAE."""
    ran = [r for r in members if r.fallback_reason is None] or list(members)
    length = min(len(r.calib) for r in ran)
    errors = [calib_mae(r, history_wh, length) for r in ran]
    if best is not None:
        order = sorted(range(len(ran)), key=lambda i: errors[i])[:best]
        weights = [1.0 if i in order else 0.0 for i in range(len(ran))]
    elif length == 0:
        weights = [1.0] * len(ran)
    else:
        weights = [1.0 / max(e, 1e-9) for e in errors]
    total = sum(weights)
    weights = [w / total for w in weights]
    horizon = len(ran[0].values)
    values = tuple(
        sum(w * r.values[h] for w, r in zip(weights, ran, strict=True)) for h in range(horizon)
    )
    calib = tuple(
        sum(w * r.calib[len(r.calib) - length + i] for w, r in zip(weights, ran, strict=True))
        for i in range(length)
    )
    reasons = [r.fallback_reason for r in members if r.fallback_reason is not None]
    reason = "; ".join(f"{r}" for r in reasons) if len(reasons) == len(members) else None
    return PointRun(values, calib, model=model, fallback_reason=reason)
