"""Scenarios a researcher describes (``simulate --scenario FILE``), household by household.

Measured profiles where there are some, seeded ones for the rest.

A :class:`HouseholdPlan` fixes what the scenario file says of one household (its PV,
orientation, battery, connection limit, annual demand, measured demand and/or PV); what
it leaves open is drawn from the seed as for a generated household. :func:`build_planned`
assembles the scenario: the generated households first (``h001``, ``h002``, ... exactly
as :func:`wattmesh.sim.scenario.build_scenario` draws them, so a plan without explicit
households is that scenario), then the planned ones, each from its own seed stream.

Measured profiles (:class:`MeasuredProfile`) are the CSV format of ``wattmesh forecast
backtest`` (``timestamp,value_w``, read by :func:`wattmesh.forecasting.backtesting.
parse_measured_csv`, its gaps filled from a day earlier), resampled to the interval with
integer Wh kept exact: a file step longer than the interval splits its energy over the
intervals it covers (remainders to the later ones), a shorter one adds up. A profile must
cover the whole scenario, history included (ConfigError otherwise, naming the file).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from wattmesh.agents.battery import BatterySpec
from wattmesh.broker.errors import ConfigError
from wattmesh.sim.demand_model import demand_cumulative
from wattmesh.sim.pv_model import (
    WEATHER_SITE_LATITUDE_DEG,
    WEATHER_SITE_LONGITUDE_DEG,
    PvModel,
    draw_orientation,
)
from wattmesh.sim.scenario import (
    _STREAM_PROFILE,
    DEFAULT_START,
    HouseholdProfile,
    HouseholdSpec,
    Scenario,
    _check_scenario_args,
    _epoch_seconds,
    _rng,
    _round_wh,
    _UnitPv,
    build_scenario,
    make_households,
)

__all__ = ["HouseholdPlan", "MeasuredProfile", "ScenarioPlan", "build_planned"]


@dataclass(frozen=True)
class MeasuredProfile:
    """Measured energy per file step: ``wh[i]`` over ``[start + i * step, + step)``."""

    name: str  # the file, for errors
    start_epoch_s: int
    step_s: int
    wh: tuple[int, ...]

    def resample(self, start_epoch_s: int, interval_s: int, count: int) -> tuple[int, ...]:
        """Energy per interval over ``count`` intervals from ``start_epoch_s``."""
        end = start_epoch_s + count * interval_s
        have_end = self.start_epoch_s + len(self.wh) * self.step_s
        if start_epoch_s < self.start_epoch_s or end > have_end:
            raise ConfigError(
                f"{self.name} covers {_iso(self.start_epoch_s)} to {_iso(have_end)}; the"
                f" scenario (history included) needs {_iso(start_epoch_s)} to {_iso(end)}"
            )
        if (start_epoch_s - self.start_epoch_s) % min(self.step_s, interval_s):
            raise ConfigError(f"{self.name}: its timestamps are not aligned to the intervals")
        step = self.step_s
        if step % interval_s and interval_s % step:
            raise ConfigError(
                f"{self.name}: its step of {step} s and the interval of {interval_s} s"
                " must divide one another"
            )
        prefix = (0, *itertools.accumulate(self.wh))

        def cumulative(t: int) -> int:
            """Energy from the file's start to ``t``, a step's share floored: the
            intervals' energies add up exactly to the steps'."""
            full, part = divmod(t - self.start_epoch_s, step)
            done = prefix[full]
            if part:
                done += self.wh[full] * part // step
            return done

        edges = [cumulative(start_epoch_s + k * interval_s) for k in range(count + 1)]
        return tuple(b - a for a, b in itertools.pairwise(edges))


@dataclass(frozen=True)
class HouseholdPlan:
    """One household of a scenario file; ``None`` leaves a value to the seed."""

    agent_id: str
    pv_peak_w: int = 0
    annual_demand_wh: int | None = None  # required unless ``demand`` is measured
    orientation: tuple[int, int] | None = None  # (tilt_deg, azimuth_deg)
    battery: BatterySpec | None = None
    max_power_w: int | None = None  # the connection's limit; None: the default
    demand: MeasuredProfile | None = None
    pv: MeasuredProfile | None = None


@dataclass(frozen=True)
class ScenarioPlan:
    """What :func:`build_planned` needs besides the seed and the period."""

    generated: int  # seeded households h001 ...
    pv_share: float
    battery_share: float
    households: tuple[HouseholdPlan, ...] = ()
    start: datetime | None = None  # first simulated interval; None: the default period
    interval_s: int = 900
    latitude_deg: float = WEATHER_SITE_LATITUDE_DEG
    longitude_deg: float = WEATHER_SITE_LONGITUDE_DEG

    def history_start(self, history_days: int) -> datetime:
        """The scenario's start: ``history_days`` before ``start``, or the default."""
        if self.start is None:
            return DEFAULT_START
        return self.start - history_days * _DAY

    @property
    def max_power_w(self) -> dict[str, int]:
        """The connection limits the plan gives (agent: W)."""
        return {h.agent_id: h.max_power_w for h in self.households if h.max_power_w is not None}


_DAY = datetime(1970, 1, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def build_planned(plan: ScenarioPlan, *, days: int, seed: int, history_days: int) -> Scenario:
    """The scenario of ``plan`` over ``history_days + days`` days (ConfigError when a
    measured profile does not cover them, ValueError for arguments out of range)."""
    start = plan.history_start(history_days)
    if not plan.households:
        return build_scenario(
            households=plan.generated,
            days=days,
            seed=seed,
            pv_share=plan.pv_share,
            battery_share=plan.battery_share,
            start=start,
            history_days=history_days,
            interval_s=plan.interval_s,
            latitude_deg=plan.latitude_deg,
            longitude_deg=plan.longitude_deg,
        )
    start_utc = _check_scenario_args(
        households=plan.generated + len(plan.households),
        days=days,
        seed=seed,
        pv_share=plan.pv_share,
        start=start,
        history_days=history_days,
        interval_s=plan.interval_s,
        latitude_deg=plan.latitude_deg,
        longitude_deg=plan.longitude_deg,
    )
    start_s = _epoch_seconds(start_utc)
    interval_s = plan.interval_s
    count = (history_days + days) * 86_400 // interval_s
    utc_offset_s = round(plan.longitude_deg / 15.0) * 3600
    specs = (
        make_households(
            plan.generated, seed=seed, pv_share=plan.pv_share, battery_share=plan.battery_share
        )
        if plan.generated
        else ()
    )
    needs_model = any(s.pv_peak_w for s in specs) or any(
        h.pv is None and h.pv_peak_w for h in plan.households
    )
    pv = _UnitPv(
        PvModel.create(
            start_epoch_s=start_s,
            interval_count=count,
            interval_s=interval_s,
            utc_offset_s=utc_offset_s,
            latitude_deg=plan.latitude_deg,
            longitude_deg=plan.longitude_deg,
        )
        if needs_model
        else None,
        count,
    )
    demand = demand_cumulative(start_s + utc_offset_s, count, interval_s)
    profiles: list[HouseholdProfile] = []
    for i, spec in enumerate(specs):
        rng = _rng(seed, _STREAM_PROFILE, i)
        orientation = draw_orientation(rng)
        demand_wh = _round_wh(demand.draw_shares(rng) * float(spec.annual_demand_wh))
        profiles.append(HouseholdProfile(spec, demand_wh, pv.wh(orientation, spec.pv_peak_w)))
    for j, h in enumerate(plan.households):
        rng = _rng(seed, _STREAM_PROFILE, len(specs) + j)
        orientation = draw_orientation(rng)  # drawn whether used or not: streams stay put
        shares = demand.draw_shares(rng)
        if h.demand is not None:
            demand_wh = h.demand.resample(start_s, interval_s, count)
        else:
            demand_wh = _round_wh(shares * float(h.annual_demand_wh or 0))
        if h.pv is not None:
            pv_wh = h.pv.resample(start_s, interval_s, count)
        else:
            pv_wh = pv.wh(h.orientation or orientation, h.pv_peak_w)
        annual = h.annual_demand_wh or max(1, sum(demand_wh) * 365 // (history_days + days))
        spec = HouseholdSpec(h.agent_id, h.pv_peak_w, annual, h.battery)
        profiles.append(HouseholdProfile(spec, demand_wh, pv_wh))
    return Scenario(
        start=start_utc,
        interval_s=interval_s,
        history_intervals=history_days * 86_400 // interval_s,
        households=tuple(profiles),
    )


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
