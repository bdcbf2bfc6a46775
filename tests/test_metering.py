"""ledger.metering (pure): estimates for missing readings, corrections, flags, restore.

Households are metered over a run of intervals; each reading arrives on time, late (a
backfill, a few intervals later) or never. Whatever the pattern, every correction
revises exactly the revision logged before it, and every run of intervals between two
known readings is billed for exactly the energy the two readings show.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.metering import Flag, Metering, MeteringConfig, Revision
from wattmesh.ledger.settlement import Basis, FlagReason, Registers

TARIFF = GridTariff(300_000, 80_000)
T0 = 1_750_000_500 - 1_750_000_500 % 900
STEP = 900
AGENTS = ("a", "b", "c")


def at(i: int) -> int:
    return T0 + i * STEP


@dataclass(frozen=True)
class Plan:
    """True registers per agent and interval index, and when each reading arrives."""

    registers: dict[str, list[Registers]]
    arrival: dict[tuple[str, int], int | None]  # interval index -> arrival index, or never
    fills: dict[int, tuple[Fill, ...]]


@st.composite
def plans(draw: st.DrawFn, *, allow_never: bool = True) -> Plan:
    n = draw(st.integers(2, 9))
    registers: dict[str, list[Registers]] = {}
    arrival: dict[tuple[str, int], int | None] = {}
    for agent in AGENTS:
        imp, exp = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
        series = []
        for i in range(n):
            series.append(Registers(at(i), imp, exp))
            imp += draw(st.integers(0, 2_000))
            exp += draw(st.integers(0, 2_000))
        registers[agent] = series
        for i in range(n):
            choice = draw(
                st.sampled_from(
                    ["now", "now", "late", "never"] if allow_never else ["now", "now", "late"]
                )
            )
            if i == 0 or choice == "now":
                arrival[(agent, i)] = i  # the first reading is the baseline: always on time
            elif choice == "late":
                arrival[(agent, i)] = i + draw(st.integers(1, 3))
            else:
                arrival[(agent, i)] = None
    fills = {
        i: tuple(
            draw(
                st.lists(
                    st.builds(
                        Fill,
                        buyer=st.sampled_from(AGENTS),
                        seller=st.sampled_from(AGENTS),
                        quantity_wh=st.integers(1, 1_500),
                        price_micro_per_kwh=st.integers(80_000, 300_000),
                        buy_ref=st.just("B"),
                        sell_ref=st.just("S"),
                    ),
                    max_size=3,
                )
            )
        )
        for i in range(n)
    }
    return Plan(registers, arrival, fills)


@dataclass
class Log:
    """What the ledger would have logged, per close."""

    readings: list[tuple[str, int, Registers]]
    revisions: list[Revision]
    flags: list[Flag]


def run(metering: Metering, plan: Plan, indexes: range, log: Log) -> None:
    """Close intervals ``indexes`` (and one closing round after the last one)."""
    n = len(plan.registers[AGENTS[0]])
    for c in indexes:
        on_time = {a: plan.registers[a][c] for a in AGENTS if c < n and plan.arrival[(a, c)] == c}
        late = {
            (a, at(i)): plan.registers[a][i]
            for (a, i), when in plan.arrival.items()
            if when == c and i < c and i < n and metering.awaits(a, at(i))
        }
        due = (at(c - 1), TARIFF, plan.fills[c - 1]) if 0 < c <= n else None
        revisions, flags = metering.close(interval=at(c), readings=on_time, late=late, settle=due)
        log.readings += [(a, at(c), r) for a, r in on_time.items()]
        log.readings += [(a, i, r) for (a, i), r in late.items()]
        log.revisions += revisions
        log.flags += flags


def latest(log: Log) -> dict[tuple[str, int], Revision]:
    current: dict[tuple[str, int], Revision] = {}
    for r in log.revisions:
        key = (r.after.agent, r.after.interval)
        if r.before is None:
            assert key not in current, f"{key} settled twice"
        else:
            assert current[key].after == r.before, f"{key}: correction of a stale revision"
        current[key] = r
    return current


@settings(max_examples=80, deadline=None)
@given(plan=plans())
def test_runs_between_known_readings_are_billed_exactly(plan: Plan) -> None:
    n = len(plan.registers[AGENTS[0]])
    metering = Metering()
    log = Log([], [], [])
    run(metering, plan, range(n + 4), log)
    assert log.flags == []
    current = latest(log)
    for agent in AGENTS:
        settled = [current[(agent, at(i))] for i in range(n - 1)]  # every interval settled
        known = sorted(
            {
                i
                for (a, i), when in plan.arrival.items()
                if a == agent and when is not None and i < n
            }
        )
        for left, right in itertools.pairwise(known):
            run_ = settled[left:right]
            start, end = plan.registers[agent][left], plan.registers[agent][right]
            assert sum(r.after.import_wh for r in run_) == end.import_wh - start.import_wh
            assert sum(r.after.export_wh for r in run_) == end.export_wh - start.export_wh
            expected = Basis.METERED if right - left == 1 else Basis.ESTIMATED
            assert all(r.basis is expected for r in run_)
        for r in settled:
            s = r.after
            assert s.import_wh - s.export_wh == (s.bought_wh - s.sold_wh) + (
                s.grid_buy_wh - s.grid_sell_wh
            )


@settings(max_examples=80, deadline=None)
@given(plan=plans(allow_never=False))
def test_once_every_reading_arrived_every_interval_is_metered(plan: Plan) -> None:
    n = len(plan.registers[AGENTS[0]])
    metering = Metering()
    log = Log([], [], [])
    run(metering, plan, range(n + 4), log)
    current = latest(log)
    for agent in AGENTS:
        regs = plan.registers[agent]
        for i in range(n - 1):
            r = current[(agent, at(i))]
            assert r.basis is Basis.METERED
            assert r.after.import_wh == regs[i + 1].import_wh - regs[i].import_wh
            assert r.after.export_wh == regs[i + 1].export_wh - regs[i].export_wh


@settings(max_examples=60, deadline=None)
@given(plan=plans(), cut=st.integers(1, 8))
def test_state_restored_from_the_log_behaves_the_same(plan: Plan, cut: int) -> None:
    """A Metering rebuilt from what was logged gives the same events from then on."""
    n = len(plan.registers[AGENTS[0]])
    cut = min(cut, n)
    live = Metering()
    log = Log([], [], [])
    run(live, plan, range(cut), log)
    restored = Metering()
    for agent, interval, registers in log.readings:
        restored.restore_reading(agent, interval, registers)
    for r in log.revisions:
        replay = restored.restore_settlement if r.before is None else restored.restore_correction
        replay(r.after, r.basis, end_interval=r.end_interval, tariff=r.tariff)
    for f in log.flags:
        restored.restore_flag(f)
    restored.prune(at(cut - 1))
    rest_live, rest_restored = Log([], [], []), Log([], [], [])
    run(live, plan, range(cut, n + 4), rest_live)
    run(restored, plan, range(cut, n + 4), rest_restored)
    assert rest_restored == rest_live


def close(
    metering: Metering,
    c: int,
    readings: dict[str, Registers],
    late: dict[tuple[str, int], Registers] | None = None,
    fills: tuple[Fill, ...] = (),
) -> tuple[list[Revision], list[Flag]]:
    return metering.close(
        interval=at(c), readings=readings, late=late or {}, settle=(at(c - 1), TARIFF, fills)
    )


def test_estimate_rule_last_metered_interval_then_traded_position() -> None:
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 100, 0)}, late={}, settle=None)
    sale = (Fill("x", "a", 300, 100_000, "B", "S"),)
    # No metered interval yet: the traded position (sold 300 -> export 300, no deviation).
    (first,), _ = close(metering, 1, {}, fills=sale)
    assert first.basis is Basis.ESTIMATED
    assert (first.after.import_wh, first.after.export_wh, first.after.grid_cost_micro) == (
        0,
        300,
        0,
    )
    assert first.after.p2p_cost_micro == -30_000
    # The next reading bounds a run of two intervals: 1000 Wh imported, spread evenly.
    revisions, _ = close(metering, 2, {"a": Registers(at(2), 1_101, 0)})
    by_interval = {r.after.interval: r for r in revisions}
    assert by_interval[at(0)].before == first.after  # a correction of the estimate
    assert [by_interval[at(i)].after.import_wh for i in (0, 1)] == [501, 500]
    assert all(r.basis is Basis.ESTIMATED for r in revisions)
    # A metered interval follows; then a missing reading repeats its flows.
    close(metering, 3, {"a": Registers(at(3), 1_141, 7)})
    (estimate,), _ = close(metering, 4, {})
    assert (estimate.after.import_wh, estimate.after.export_wh) == (40, 7)


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (Registers(at(1), 99, 0), FlagReason.REGISTER_BACKWARDS),
        (Registers(at(1), 100, -1), FlagReason.REGISTER_BACKWARDS),
        (Registers(at(0), 150, 0), FlagReason.METER_TIME_BACKWARDS),
        (Registers(at(1), 100 + 4_313, 0), None),  # 17,250 W for 900 s = 4,312.5 Wh
        (Registers(at(1), 100 + 4_314, 0), FlagReason.BEYOND_LIMIT),
        (Registers(at(1), 100 + 2_157, 2_157), FlagReason.BEYOND_LIMIT),
    ],
    ids=["import-back", "export-back", "same-time", "at-limit", "beyond", "both-ways"],
)
def test_bad_registers_are_flagged_not_settled(end: Registers, reason: FlagReason | None) -> None:
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 100, 0)}, late={}, settle=None)
    revisions, flags = close(metering, 1, {"a": end})
    if reason is None:
        assert [r.basis for r in revisions] == [Basis.METERED] and flags == []
        return
    assert revisions == []
    (flag,) = flags
    assert (flag.agent, flag.interval, flag.end_interval, flag.reason) == (
        "a",
        at(0),
        at(1),
        reason,
    )
    assert (flag.import_wh, flag.export_wh) == (end.import_wh - 100, end.export_wh)
    # The flagged reading is the baseline of the next interval.
    assert metering.last_reading("a") == end


def test_a_meter_clock_far_ahead_does_not_widen_the_bound() -> None:
    """Issue 11, finding 5: a signed reading with meter_time 2**53 - 1 and 997 kWh in a
    20 s interval is flagged, not settled as metered: the bound is the connection's
    limit over the 20 s between the two readings' intervals."""
    start = 1_750_000_000
    metering = Metering()
    metering.close(interval=start, readings={"a": Registers(start, 0, 0)}, late={}, settle=None)
    end = Registers(2**53 - 1, 997_000, 0)
    revisions, flags = metering.close(
        interval=start + 20, readings={"a": end}, late={}, settle=(start, TARIFF, ())
    )
    assert revisions == []
    assert [(f.reason, f.elapsed_s, f.limit_wh) for f in flags] == [
        (FlagReason.BEYOND_LIMIT, 20, 96)  # ceil(17,250 W * 20 s / 3600)
    ]


def test_a_slow_meter_clock_does_not_narrow_the_bound_of_a_backfill() -> None:
    """A reading backfilled two intervals after the last one is bounded by two
    intervals' worth, whatever its meter clock says (here: 100 s after the first)."""
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 0, 0)}, late={}, settle=None)
    close(metering, 1, {})  # a's reading at 1 is missing: interval 0 estimated
    close(metering, 2, {})  # and at 2: interval 1 estimated
    # 8,000 Wh: more than one interval carries (4,313 Wh), less than two (8,625 Wh).
    revisions, flags = close(metering, 3, {}, late={("a", at(2)): Registers(at(0) + 100, 8_000, 0)})
    assert flags == []
    assert sum(r.after.import_wh for r in revisions if r.after.interval <= at(1)) == 8_000
    corrected = {r.after.interval: r.after.import_wh for r in revisions if r.before is not None}
    assert corrected == {at(0): 4_000, at(1): 4_000}


@pytest.mark.parametrize(("energy_wh", "flagged"), [(8_625, False), (8_626, True)])
def test_the_bound_over_two_intervals_is_exact(energy_wh: int, flagged: bool) -> None:
    """Two intervals of 900 s at 17,250 W: exactly 8,625 Wh is plausible, one Wh more is
    not, however far the meter's clock says it ran."""
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 0, 0)}, late={}, settle=None)
    close(metering, 1, {})  # a's reading at 1 is missing: interval 0 estimated
    revisions, flags = close(metering, 2, {"a": Registers(at(2) + 10**6, energy_wh, 0)})
    assert [(f.reason, f.elapsed_s, f.limit_wh) for f in flags] == (
        [(FlagReason.BEYOND_LIMIT, 2 * STEP, 8_625)] if flagged else []
    )
    settled = [r.after.import_wh for r in revisions if r.after.interval < at(2)]
    assert settled == ([] if flagged else [4_313, 4_312])


def test_the_limit_is_configured_per_connection() -> None:
    metering = Metering(MeteringConfig(max_power_w={"a": 3_680}))  # 16 A single-phase
    metering.close(
        interval=at(0),
        readings={"a": Registers(at(0), 0, 0), "b": Registers(at(0), 0, 0)},
        late={},
        settle=None,
    )
    _, flags = close(metering, 1, {"a": Registers(at(1), 921, 0), "b": Registers(at(1), 921, 0)})
    assert [(f.agent, f.reason, f.limit_wh) for f in flags] == [("a", FlagReason.BEYOND_LIMIT, 920)]


def test_awaits_only_readings_that_fill_a_gap() -> None:
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 0, 0)}, late={}, settle=None)
    close(metering, 1, {"a": Registers(at(1), 10, 0)})
    close(metering, 2, {})  # a's reading at 2 is missing: interval 1 estimated
    assert metering.awaits("a", at(2))
    assert not metering.awaits("a", at(1))  # known already
    assert not metering.awaits("a", at(0))
    assert not metering.awaits("b", at(2))  # never seen
    revisions, _ = close(metering, 3, {}, late={("a", at(2)): Registers(at(2), 25, 0)})
    corrected = [r for r in revisions if r.before is not None]
    assert [(r.after.interval, r.after.import_wh, r.basis) for r in corrected] == [
        (at(1), 15, Basis.METERED)
    ]
    assert not metering.awaits("a", at(2))


def test_estimates_beyond_the_backfill_window_are_forgotten() -> None:
    metering = Metering(MeteringConfig(backfill_window_s=2 * STEP))
    metering.close(interval=at(0), readings={"a": Registers(at(0), 0, 0)}, late={}, settle=None)
    for c in range(1, 6):
        close(metering, c, {})
    assert not metering.awaits("a", at(1))
    assert metering.awaits("a", at(5))


def test_settlement_of_a_settled_interval_is_not_repeated() -> None:
    metering = Metering()
    metering.close(interval=at(0), readings={"a": Registers(at(0), 0, 0)}, late={}, settle=None)
    first, _ = close(metering, 1, {"a": Registers(at(1), 5, 0)})
    again, _ = close(metering, 2, {"a": Registers(at(2), 9, 0)})  # settle= interval 1 ...
    assert [r.after.interval for r in first] == [at(0)]
    assert [r.after.interval for r in again] == [at(1)]
    repeat, _ = metering.close(interval=at(3), readings={}, late={}, settle=(at(1), TARIFF, ()))
    assert repeat == []
