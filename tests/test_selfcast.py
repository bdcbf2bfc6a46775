"""The agent's own forecast from its own readings (agents/_selfcast.py): which rule
applies with how much history, the flows a meter's registers give, the bounded ring."""

from __future__ import annotations

from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.agents._selfcast import (
    DAY_S,
    Flow,
    Method,
    ReadingRing,
    Registers,
    flow_between,
    ring_slots,
    self_forecast,
)

STEP = 900
SLOTS = DAY_S // STEP  # 96 a day
T = 1_764_547_200  # 2025-12-01 00:00 UTC, a multiple of STEP


def _readings(
    demand_wh: list[int], pv_wh: list[int] | None = None, *, start: int = T
) -> dict[int, Registers]:
    """Readings at each interval's start for the per-interval demand and PV given (a
    meter with a PV register): len + 1 readings, the last one at the end."""
    pv = pv_wh if pv_wh is not None else [0] * len(demand_wh)
    net = [d - p for d, p in zip(demand_wh, pv, strict=True)]
    imports = [0, *accumulate(max(n, 0) for n in net)]
    exports = [0, *accumulate(max(-n, 0) for n in net)]
    pvs = [0, *accumulate(pv)]
    return {
        start + k * STEP: Registers(start + k * STEP, imports[k], exports[k], pvs[k])
        for k in range(len(net) + 1)
    }


def test_nothing_without_a_whole_interval() -> None:
    assert self_forecast({}, T, STEP) is None
    one = _readings([])
    assert self_forecast(one, T, STEP) is None


def test_less_than_a_day_is_persistence_of_the_last_interval() -> None:
    readings = _readings([100, 250, 40], [0, 0, 90])  # the last interval exported 50
    now = T + 3 * STEP
    forecast = self_forecast(readings, now, STEP)
    assert forecast is not None
    assert (forecast.demand_wh, forecast.pv_wh) == (40, 90)
    assert forecast.method is Method.PERSISTENCE
    assert (forecast.label, forecast.history_days) == ("persistence", 0)


def test_persistence_skips_a_missed_reading_but_not_beyond_a_day() -> None:
    readings = _readings([100, 250, 40])
    del readings[T + 3 * STEP]  # the meter gave nothing when this interval opened
    forecast = self_forecast(readings, T + 3 * STEP, STEP)
    assert forecast is not None and forecast.demand_wh == 250
    stale = _readings([100])
    assert self_forecast(stale, T + DAY_S // 2, STEP) is not None
    assert self_forecast(stale, T + DAY_S + 2 * STEP, STEP) is None


def test_with_a_day_or_more_the_last_interval_and_the_same_slot_are_averaged() -> None:
    # slot k of day d: d * 1000 + k Wh
    demand = [day * 1000 + slot for day in range(3) for slot in range(SLOTS)]
    forecast = self_forecast(_readings(demand), T + 3 * DAY_S, STEP)  # slot 0 of day 3
    assert forecast is not None
    assert forecast.method is Method.SEASONAL
    # last interval 2095; slot 0 of days 0-2: 0, 1000, 2000 (mean 1000); (2095 + 1000) / 2
    assert forecast.demand_wh == 1548  # 1547.5, rounded up
    assert forecast.label == "own seasonal (3 days of history)"
    first = self_forecast(_readings(demand[: SLOTS + 1]), T + DAY_S + STEP, STEP)
    assert first is not None and first.label == "own seasonal (1 day of history)"
    assert first.demand_wh == 501  # last 1000, yesterday's slot 1 Wh


def test_seven_days_of_the_same_slot_at_most_and_pv_apart() -> None:
    # Slot 7 over the week: 100, 101, ..., 106 (mean 103), 5 Wh otherwise; PV 1 Wh in
    # one of those slots. Then day 7 up to slot 6.
    week = [100 + day if slot == 7 else 5 for day in range(8) for slot in range(SLOTS)]
    pv = [int(k == 7) for k in range(len(week))]
    readings = _readings(week[: 7 * SLOTS + 7], pv[: 7 * SLOTS + 7])
    forecast = self_forecast(readings, T + 7 * DAY_S + 7 * STEP, STEP)
    assert forecast is not None
    assert forecast.method is Method.SEASONAL
    assert (forecast.demand_wh, forecast.pv_wh) == (54, 0)  # (5 + 103) / 2; 1/14 rounds to 0
    assert forecast.label == "own seasonal (7 days of history)"
    older = _readings([1] * (8 * SLOTS))  # 8 days: the oldest day is not used
    ones = self_forecast(older, T + 8 * DAY_S, STEP)
    assert ones is not None and ones.demand_wh == 1
    readings = _readings([int(slot == 0) for _ in range(7) for slot in range(SLOTS)])
    halves = self_forecast(readings, T + 7 * DAY_S, STEP)  # last 0, the slot's mean 1
    assert halves is not None and halves.demand_wh == 1  # 1/2 rounds up


def test_missing_days_are_left_out_of_the_same_slot_mean() -> None:
    demand = [10 * (day + 1) for day in range(3) for _ in range(SLOTS)]
    readings = _readings(demand)
    now = T + 3 * DAY_S
    del readings[now - DAY_S]  # no reading when yesterday's slot 0 opened
    forecast = self_forecast(readings, now, STEP)
    assert forecast is not None
    assert forecast.method is Method.SEASONAL
    assert forecast.demand_wh == 23  # (30 + mean(20, 10)) / 2 = 22.5


def test_after_a_day_without_readings_the_same_slot_alone() -> None:
    demand = [slot for slot in range(SLOTS)]
    forecast = self_forecast(_readings(demand), T + 2 * DAY_S + 5 * STEP, STEP)
    assert forecast is not None
    assert forecast.method is Method.SEASONAL_ONLY
    assert (forecast.demand_wh, forecast.label) == (5, "own seasonal (2 days of history)")


def test_intervals_that_do_not_divide_a_day_use_persistence() -> None:
    readings = {t: Registers(t, (t - 700) // 7, 0) for t in range(700, 700 + 7 * 20_000, 7)}
    forecast = self_forecast(readings, max(readings), 7)
    assert forecast is not None and forecast.method is Method.PERSISTENCE
    assert forecast.demand_wh == 1


def test_flows_from_registers() -> None:
    start = Registers(T, 1000, 500, 200, 30, 40)
    # imported 300, exported 100, PV 250, battery in 50 and out 20:
    # demand 300 - 100 + 250 - 50 + 20 = 420
    assert flow_between(start, Registers(T + STEP, 1300, 600, 450, 80, 60)) == Flow(420, 250)
    # a grid meter alone (no PV register): net export counts as PV
    assert flow_between(Registers(T, 10, 10), Registers(T + STEP, 10, 70)) == Flow(0, 60)
    # a register going backwards (a swapped meter): no evidence
    assert flow_between(start, Registers(T + STEP, 999, 600, 450, 80, 60)) is None


@settings(max_examples=200)
@given(
    st.lists(st.integers(0, 5_000), min_size=1, max_size=400),
    st.lists(st.integers(0, 5_000), min_size=400, max_size=400),
)
def test_demand_minus_pv_is_the_forecast_net_grid_energy(demand: list[int], pv: list[int]) -> None:
    """Whatever the history, the forecast is whole Wh, never negative, and its net is
    one the household had in that slot (persistence, one day) or between them."""
    pv = pv[: len(demand)]
    readings = _readings(demand, pv)
    forecast = self_forecast(readings, T + len(demand) * STEP, STEP)
    assert forecast is not None
    assert forecast.demand_wh >= 0 and forecast.pv_wh >= 0
    nets = [d - p for d, p in zip(demand, pv, strict=True)]
    assert min(nets) <= forecast.demand_wh - forecast.pv_wh <= max(nets)
    # a grid meter without a PV register gives the same net, but for rounding (demand
    # and PV are rounded apart)
    grid_only = {t: Registers(t, r.import_wh, r.export_wh) for t, r in readings.items()}
    plain = self_forecast(grid_only, T + len(demand) * STEP, STEP)
    assert plain is not None
    assert min(nets) <= plain.demand_wh - plain.pv_wh <= max(nets)
    assert abs((plain.demand_wh - plain.pv_wh) - (forecast.demand_wh - forecast.pv_wh)) <= 1


@pytest.mark.parametrize("interval_s", [300, 900, 3_600, 86_400])
def test_the_ring_keeps_seven_days_and_one_interval(interval_s: int) -> None:
    ring = ReadingRing()
    for k in range(2 * ring_slots(interval_s) + 5):
        assert ring.add(Registers(k * interval_s, k, 0))
        assert len(ring) <= ring_slots(interval_s)
    newest = max(ring.readings)
    assert len(ring) == ring_slots(interval_s)
    assert min(ring.readings) == newest - 7 * DAY_S
    assert not ring.add(Registers(newest - 7 * DAY_S - interval_s, 0, 0))  # too old
    assert ring.add(Registers(newest, 0, 0)) and len(ring) == ring_slots(interval_s)


def test_a_week_of_readings_gives_the_weekly_mean_through_the_ring() -> None:
    demand = [slot for _ in range(8) for slot in range(SLOTS)]
    ring = ReadingRing(_readings(demand).values())  # loaded in any order
    assert len(ring) == ring_slots(STEP) == 7 * SLOTS + 1
    forecast = ring.forecast(T + 8 * DAY_S, STEP)
    assert forecast is not None
    assert forecast.method is Method.SEASONAL and forecast.history_days == 7
    assert forecast.demand_wh == 48  # (95 + 0) / 2: the last slot of the day, then slot 0


@given(st.lists(st.integers(0, 10**6), min_size=5, max_size=5))
def test_a_flows_net_is_the_grid_energy_without_the_battery(deltas: list[int]) -> None:
    d_import, d_export, d_pv, d_in, d_out = deltas
    start = Registers(T, 10**6, 10**6, 10**6, 10**6, 10**6)
    end = Registers(T + STEP, *(10**6 + d for d in deltas))
    flow = flow_between(start, end)
    assert flow is not None and flow.demand_wh >= 0 and flow.pv_wh >= d_pv
    assert flow.demand_wh - flow.pv_wh == d_import - d_export - d_in + d_out
