"""Tests for the simulated-household generator (wattmesh.sim.scenario)."""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib
import pytest
from demandlib.bdew import H25
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.sim.scenario import (
    DEFAULT_START,
    WEATHER_SITE_LATITUDE_DEG,
    WEATHER_SITE_LONGITUDE_DEG,
    HouseholdProfile,
    HouseholdSpec,
    Scenario,
    build_scenario,
    make_households,
)

LOCAL_OFFSET = timedelta(hours=-5)  # Greensboro NC local standard time
HISTORY_DAYS = 28
DAYS = 30


@pytest.fixture(scope="module")
def june() -> Scenario:
    """Default site and start, 20 households, 28 history days + 30 days."""
    return build_scenario(households=20, days=DAYS, seed=7)


@pytest.fixture(scope="module")
def h25_year_2025() -> pd.Series[float]:
    """BDEW H25 mean power per 15-min slot over local calendar year 2025."""
    index = pd.date_range("2025-01-01", "2026-01-01", freq="15min", inclusive="left")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # demandlib vs pandas 3.1
        profile = H25(index)
    return pd.Series(np.asarray(profile, dtype=np.float64), index=index)


def _local_naive(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp((moment + LOCAL_OFFSET).replace(tzinfo=None))


def _array(values: tuple[int, ...]) -> npt.NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


def test_same_seed_gives_identical_scenario() -> None:
    first = build_scenario(households=6, days=2, seed=11, history_days=1)
    second = build_scenario(households=6, days=2, seed=11, history_days=1)
    assert first == second


def test_different_seed_gives_different_scenario() -> None:
    first = build_scenario(households=6, days=2, seed=11, history_days=1)
    other = build_scenario(households=6, days=2, seed=12, history_days=1)
    assert [h.spec for h in first.households] != [h.spec for h in other.households]
    assert [h.demand_wh for h in first.households] != [h.demand_wh for h in other.households]


def test_households_are_not_identical(june: Scenario) -> None:
    shapes = {
        tuple(np.round(_array(h.demand_wh) / h.spec.annual_demand_wh, 6)) for h in june.households
    }
    assert len(shapes) == len(june.households)


def test_lengths_history_and_interval_times(june: Scenario) -> None:
    expected = (HISTORY_DAYS + DAYS) * 96
    assert june.interval_s == 900
    assert june.start == DEFAULT_START == datetime(2025, 6, 2, tzinfo=UTC)
    assert june.start.tzinfo is not None
    assert june.start.utcoffset() == timedelta(0)
    assert june.history_intervals == HISTORY_DAYS * 96
    assert june.interval_count == expected
    assert june.simulated_intervals == DAYS * 96
    for household in june.households:
        assert len(household.demand_wh) == expected
        assert len(household.pv_wh) == expected
    assert june.interval_start(0) == june.start
    assert june.interval_start(1) == june.start + timedelta(minutes=15)
    assert june.interval_start(june.history_intervals) == datetime(2025, 6, 30, tzinfo=UTC)
    assert june.interval_start(june.interval_count) == datetime(2025, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("interval_s", [300, 3600])
def test_interval_length_sets_interval_count(interval_s: int) -> None:
    scenario = build_scenario(
        households=2, days=1, seed=3, history_days=2, interval_s=interval_s, pv_share=0.5
    )
    assert scenario.interval_s == interval_s
    assert scenario.interval_count == 3 * 86_400 // interval_s
    assert scenario.history_intervals == 2 * 86_400 // interval_s
    assert all(len(h.pv_wh) == scenario.interval_count for h in scenario.households)


def test_start_is_converted_to_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    scenario = build_scenario(
        households=1, days=1, seed=1, history_days=0, start=datetime(2025, 6, 1, 19, tzinfo=eastern)
    )
    assert scenario.start == datetime(2025, 6, 2, tzinfo=UTC)
    assert scenario.start.tzinfo is UTC


def test_energies_are_non_negative_integers(june: Scenario) -> None:
    for household in june.households:
        for series in (household.demand_wh, household.pv_wh):
            assert all(type(value) is int for value in series)
            assert min(series) >= 0
        assert sum(household.demand_wh) > 0


def test_pv_share_and_non_pv_households(june: Scenario) -> None:
    with_pv = [h for h in june.households if h.spec.pv_peak_w > 0]
    without_pv = [h for h in june.households if h.spec.pv_peak_w == 0]
    assert len(with_pv) == 8  # 0.4 * 20
    for household in with_pv:
        assert 3_000 <= household.spec.pv_peak_w <= 8_000
        assert sum(household.pv_wh) > 0
    for household in without_pv:
        assert set(household.pv_wh) == {0}


def test_pv_is_zero_at_night_and_positive_at_solar_noon(june: Scenario) -> None:
    count = june.interval_count
    starts = pd.DatetimeIndex([june.interval_start(i) for i in range(count + 1)])
    solpos = pvlib.solarposition.get_solarposition(
        starts, WEATHER_SITE_LATITUDE_DEG, WEATHER_SITE_LONGITUDE_DEG
    )
    elevation = solpos["apparent_elevation"].to_numpy()
    # The sun is below the horizon at both ends of the interval (and so throughout).
    night = (elevation[:-1] < -1.0) & (elevation[1:] < -1.0)
    assert 0.3 < night.mean() < 0.5  # short June nights
    day_index = np.arange(count) // 96
    slot = np.arange(count) % 96
    local_midnight = slot == 20  # 05:00-05:15 UTC is 00:00-00:15 local standard time
    solar_noon = slot == 69  # 17:15-17:30 UTC; solar noon is about 17:20 UTC in June
    assert night[local_midnight].all()
    pv_households = [h for h in june.households if h.spec.pv_peak_w > 0]
    assert pv_households
    for household in pv_households:
        pv = _array(household.pv_wh)
        assert not pv[night].any()
        assert (pv[solar_noon] > 0).all()
        assert len(np.unique(day_index[solar_noon])) == HISTORY_DAYS + DAYS
        # Around noon, a PV household's 15-minute output is a sane share of its peak.
        noon_w = pv[solar_noon] * 4
        assert noon_w.max() <= household.spec.pv_peak_w
        assert np.median(noon_w) > 0.3 * household.spec.pv_peak_w


def test_pv_specific_yield_is_plausible_for_june_in_north_carolina(june: Scenario) -> None:
    for household in june.households:
        if household.spec.pv_peak_w == 0:
            continue
        kwh_per_kwp_day = sum(household.pv_wh) / household.spec.pv_peak_w / (HISTORY_DAYS + DAYS)
        assert 3.0 < kwh_per_kwp_day < 6.5


def test_pv_energy_does_not_depend_on_interval_length() -> None:
    kwargs = {"households": 3, "days": 2, "seed": 5, "history_days": 0, "pv_share": 1.0}
    quarter = build_scenario(interval_s=900, **kwargs)  # type: ignore[arg-type]
    hourly = build_scenario(interval_s=3600, **kwargs)  # type: ignore[arg-type]
    for fine, coarse in zip(quarter.households, hourly.households, strict=True):
        assert fine.spec == coarse.spec
        fine_hours = _array(fine.pv_wh).reshape(-1, 4).sum(axis=1)
        difference = np.abs(fine_hours - _array(coarse.pv_wh))
        assert difference.max() <= 2  # rounding of four quarters vs one hour


def test_demand_over_period_matches_h25_share_of_annual_demand(
    june: Scenario, h25_year_2025: pd.Series[float]
) -> None:
    first = _local_naive(june.interval_start(june.history_intervals))
    end = _local_naive(june.interval_start(june.interval_count))
    window = h25_year_2025[(h25_year_2025.index >= first) & (h25_year_2025.index < end)]
    assert len(window) == june.simulated_intervals
    share = float(window.sum() / h25_year_2025.sum())
    assert 0.06 < share < DAYS / 365  # households use less than average in summer
    total_actual = 0
    total_expected = 0.0
    for household in june.households:
        actual = sum(household.demand_wh[june.history_intervals :])
        expected = household.spec.annual_demand_wh * share
        assert abs(actual - expected) <= 0.03 * expected
        total_actual += actual
        total_expected += expected
    assert abs(total_actual - total_expected) <= 0.01 * total_expected


def test_demand_over_a_calendar_year_is_the_annual_demand() -> None:
    local_new_year = datetime(2025, 1, 1, 5, tzinfo=UTC)  # 00:00 local standard time
    scenario = build_scenario(
        households=4, days=365, seed=2, history_days=0, start=local_new_year, pv_share=0.0
    )
    for household in scenario.households:
        total = sum(household.demand_wh)
        # Lose or gain at most one hour at the edges from the household's time shift.
        assert (
            abs(total - household.spec.annual_demand_wh) <= 0.01 * household.spec.annual_demand_wh
        )


def test_demand_follows_the_h25_shape_in_local_time(
    h25_year_2025: pd.Series[float],
) -> None:
    scenario = build_scenario(households=40, days=14, seed=9, history_days=0, pv_share=0.0)
    first = _local_naive(scenario.start)
    end = _local_naive(scenario.interval_start(scenario.interval_count))
    window = h25_year_2025[(h25_year_2025.index >= first) & (h25_year_2025.index < end)]
    expected = window.to_numpy() / h25_year_2025.sum()
    normalised = sum(
        _array(h.demand_wh) / h.spec.annual_demand_wh for h in scenario.households
    ) / len(scenario.households)
    assert float(np.corrcoef(normalised, expected)[0, 1]) > 0.9
    # The same profile read in UTC instead of local time would not fit as well.
    utc_window = h25_year_2025[
        (h25_year_2025.index >= pd.Timestamp(scenario.start.replace(tzinfo=None)))
        & (
            h25_year_2025.index
            < pd.Timestamp(scenario.interval_start(scenario.interval_count).replace(tzinfo=None))
        )
    ]
    assert float(np.corrcoef(normalised, utc_window.to_numpy())[0, 1]) < 0.7


def test_make_households_ids_and_ranges() -> None:
    specs = make_households(12, seed=4, pv_share=0.25)
    assert [s.agent_id for s in specs] == [f"h{i:03d}" for i in range(1, 13)]
    assert sum(1 for s in specs if s.pv_peak_w > 0) == 3
    for spec in specs:
        assert 2_000_000 <= spec.annual_demand_wh <= 6_000_000
        assert spec.pv_peak_w == 0 or 3_000 <= spec.pv_peak_w <= 8_000
    assert make_households(12, seed=4, pv_share=0.25) == specs
    assert make_households(1_000, seed=4, pv_share=0.0)[-1].agent_id == "h1000"


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    pv_share=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_make_households_pv_count_is_rounded_share(n: int, pv_share: float, seed: int) -> None:
    specs = make_households(n, seed=seed, pv_share=pv_share)
    assert len(specs) == n
    assert sum(1 for s in specs if s.pv_peak_w > 0) == math.floor(pv_share * n + 0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"households": 0}, "households"),
        ({"days": 0}, "days"),
        ({"pv_share": -0.1}, "pv_share"),
        ({"pv_share": 1.5}, "pv_share"),
        ({"pv_share": math.nan}, "pv_share"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": 7}, "interval_s"),
        ({"interval_s": 7200}, "interval_s"),
        ({"history_days": -1}, "history_days"),
        ({"seed": -1}, "seed"),
        ({"start": datetime(2025, 6, 2)}, "timezone-aware"),  # noqa: DTZ001
        ({"start": datetime(2025, 6, 2, 0, 5, tzinfo=UTC)}, "aligned"),
        ({"latitude_deg": 91.0}, "latitude_deg"),
        ({"longitude_deg": -181.0}, "longitude_deg"),
    ],
)
def test_build_scenario_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"households": 2, "days": 1, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_scenario(**arguments)  # type: ignore[arg-type]


def test_value_types_reject_inconsistent_data() -> None:
    spec = HouseholdSpec(agent_id="h001", pv_peak_w=0, annual_demand_wh=3_000_000)
    with pytest.raises(ValueError, match="intervals"):
        HouseholdProfile(spec=spec, demand_wh=(1, 2), pv_wh=(0,))
    with pytest.raises(ValueError, match="demand_wh"):
        HouseholdProfile(spec=spec, demand_wh=(1, -2), pv_wh=(0, 0))
    with pytest.raises(ValueError, match="pv_peak_w"):
        HouseholdSpec(agent_id="h001", pv_peak_w=-1, annual_demand_wh=3_000_000)
    profile = HouseholdProfile(spec=spec, demand_wh=(1, 2), pv_wh=(0, 0))
    with pytest.raises(ValueError, match="UTC"):
        Scenario(
            start=datetime(2025, 6, 2),  # noqa: DTZ001
            interval_s=900,
            history_intervals=1,
            households=(profile,),
        )
    with pytest.raises(ValueError, match="history_intervals"):
        Scenario(start=DEFAULT_START, interval_s=900, history_intervals=3, households=(profile,))
