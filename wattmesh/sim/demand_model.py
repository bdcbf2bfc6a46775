"""Demand of the simulated households (``demandlib``), as shares of annual energy.

The BDEW 2025 household standard load profile (H25, the successor of H0), applied
to the site's local standard time and normalised so that one calendar year sums
to 1 (:func:`demand_cumulative`).  Each household's profile is shifted in time by
up to an hour and multiplied by seeded log-normal noise (mean 1) per interval
(:meth:`DemandCumulative.draw_shares`); the caller scales by the annual demand.

Nothing is downloaded: the profile comes from inside the installed demandlib.
Everything is a pure function of the arguments.
"""

from __future__ import annotations

import calendar
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from demandlib.bdew import H25

FloatArray = npt.NDArray[np.float64]

DEMAND_NOISE_SIGMA = 0.35
"""Sigma of the per-interval log-normal demand noise (its mean is 1)."""
DEMAND_MAX_SHIFT_S = 3_600
"""Each household's demand profile is shifted by a seeded amount in +-this."""
_DEMAND_SHIFT_STEP_S = 60

_SLP_STEP_S = 900  # BDEW profiles have 15-minute resolution


@dataclass(frozen=True)
class DemandCumulative:
    """Cumulative H25 share of annual energy at 15-minute local-time knots."""

    knot_offsets_s: FloatArray  # knot times relative to the first interval's local start
    cumulative: FloatArray  # share of annual energy consumed before each knot
    interval_count: int
    interval_s: int

    def interval_fractions(self, shift_s: int) -> FloatArray:
        """Share of annual energy per interval, the profile delayed by ``shift_s`` s."""
        bounds = np.arange(self.interval_count + 1, dtype=np.float64) * self.interval_s
        energy = np.interp(bounds - float(shift_s), self.knot_offsets_s, self.cumulative)
        fractions: FloatArray = np.diff(energy)
        return fractions

    def draw_shares(self, rng: np.random.Generator) -> FloatArray:
        """One household's share of annual energy per interval: shift, then noise, from ``rng``.

        The shift is a multiple of a minute in [-DEMAND_MAX_SHIFT_S, DEMAND_MAX_SHIFT_S];
        the noise is log-normal with sigma ``DEMAND_NOISE_SIGMA`` and mean 1.
        """
        max_shift_steps = DEMAND_MAX_SHIFT_S // _DEMAND_SHIFT_STEP_S
        shift_s = int(rng.integers(-max_shift_steps, max_shift_steps, endpoint=True)) * (
            _DEMAND_SHIFT_STEP_S
        )
        noise = rng.lognormal(
            mean=-(DEMAND_NOISE_SIGMA**2) / 2.0, sigma=DEMAND_NOISE_SIGMA, size=self.interval_count
        )
        shares: FloatArray = self.interval_fractions(shift_s) * noise
        return shares


def demand_cumulative(local_start_s: int, interval_count: int, interval_s: int) -> DemandCumulative:
    """Evaluate H25 once over the local calendar year of the start and the window.

    ``local_start_s`` is the first interval's start on the local clock, as
    seconds after 1970-01-01 00:00 local.  The profile is normalised so that
    the calendar year containing the start sums to 1.
    """
    margin_s = DEMAND_MAX_SHIFT_S + _SLP_STEP_S
    window_lo_s = (local_start_s - margin_s) // _SLP_STEP_S * _SLP_STEP_S
    window_hi_s = -(-(local_start_s + interval_count * interval_s + margin_s) // _SLP_STEP_S) * (
        _SLP_STEP_S
    )
    year = datetime.fromtimestamp(local_start_s, tz=UTC).year
    year_lo_s = calendar.timegm((year, 1, 1, 0, 0, 0))
    year_hi_s = calendar.timegm((year + 1, 1, 1, 0, 0, 0))
    lo_s = min(window_lo_s, year_lo_s)
    hi_s = max(window_hi_s, year_hi_s)
    slots = (hi_s - lo_s) // _SLP_STEP_S
    index = pd.date_range(start=pd.Timestamp(lo_s, unit="s"), periods=slots, freq=f"{_SLP_STEP_S}s")
    power = _h25_power(index)
    year_first = (year_lo_s - lo_s) // _SLP_STEP_S
    year_last = (year_hi_s - lo_s) // _SLP_STEP_S
    share = power / float(power[year_first:year_last].sum())
    cumulative = np.concatenate(([0.0], np.cumsum(share)))
    knots = (lo_s - local_start_s + np.arange(slots + 1, dtype=np.int64) * _SLP_STEP_S).astype(
        np.float64
    )
    return DemandCumulative(
        knot_offsets_s=knots,
        cumulative=cumulative,
        interval_count=interval_count,
        interval_s=interval_s,
    )


def _h25_power(index: pd.DatetimeIndex) -> FloatArray:
    """BDEW H25 mean power per 15-minute slot of the naive local-time ``index``."""
    with warnings.catch_warnings():
        # demandlib 0.2.2 uses pandas' deprecated ``inplace=`` keyword (pandas >= 3.1).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        profile: Any = H25(index)
    values: FloatArray = np.asarray(profile.to_numpy(), dtype=np.float64)
    if values.shape != (len(index),) or not np.all(np.isfinite(values)) or values.min() < 0:
        raise RuntimeError("demandlib H25 returned an unexpected profile")
    return values
