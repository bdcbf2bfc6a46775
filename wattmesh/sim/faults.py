"""``simulate --inject-faults RATE``: faults injected at known times, and how many the log caught.

A share ``RATE`` of the simulated household-days gets one fault, its kind drawn from
those the household can have, at a seeded time of that day:

- ``over_limit``: the household's demand in one interval exceeds what its connection
  carries (the profile: ``limit + OVER_LIMIT_EXTRA_WH`` more, plus what its PV and
  battery could cover in the interval); the ledger flags it
  ``beyond_limit``.
- ``register_reversal``: one reading's import register ``REVERSAL_WH`` below the reading
  before it (the meter, :class:`FaultyMeter`); the ledger flags ``register_backwards``.
- ``night_export``: a household with PV and no battery exports ``NIGHT_EXPORT_WH`` in
  each of ``NIGHT_EXPORT_INTERVALS`` intervals of the night with no PV behind it (the
  meter's export register; undeclared generation); the anomaly detector
  (:func:`forecasting.anomaly.night_export`) flags it.

- ``short_delivery``: a household with PV and no battery whose export is cut (its
  inverter curtailed to its own consumption, so its PV and export registers both lose
  what it would have exported) over ``SHORT_WINDOW_DAYS`` whole days, after its orders
  were placed on the forecast it had: it keeps selling and delivers nothing; the
  forecaster's short-delivery check (:func:`forecasting.anomaly.short_delivery`, metered
  export against P2P energy sold in the logged settlements) flags it. Only planned where
  the run has those days left; it takes up the household's days it spans.
- ``forecast_deviation``: an extra load of ``DEVIATION_EXTRA_WH`` in each of
  ``DEVIATION_INTERVALS`` daytime intervals (the profile: 2.4 kW for 3 h); the
  forecaster's deviation check (its demand band against the logged demand) flags it.

The scores come from the ledger's log alone: its ``flag`` entries and, for night export,
the detector run over the logged readings (or the ``anomaly`` entries when the forecaster
logged them), each matched to an injected fault of the same kind and household whose
interval it lies within (one interval of slack either side).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wattmesh.agents.meter import Meter, MeterReading
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W, energy_limit_wh
from wattmesh.broker.messages import ReadingBody, decode_message
from wattmesh.forecasting.anomaly import SHORT_WINDOW_DAYS, night_export_flags
from wattmesh.ledger.entries import EntryKind, parse_flag
from wattmesh.ledger.store import LedgerStore
from wattmesh.sim.scenario import HouseholdProfile, Scenario

__all__ = [
    "DEVIATION_EXTRA_WH",
    "DEVIATION_INTERVALS",
    "FAULT_KINDS",
    "METER_KINDS",
    "NIGHT_EXPORT_INTERVALS",
    "NIGHT_EXPORT_WH",
    "OVER_LIMIT_EXTRA_WH",
    "PHYSICAL_KINDS",
    "REVERSAL_WH",
    "SHORT_DELIVERY",
    "STATISTICAL_KINDS",
    "Detection",
    "FaultyMeter",
    "InjectedFault",
    "detections_from_log",
    "inject_profiles",
    "plan_faults",
    "score_faults",
    "undeclared_export_wh",
]

REGISTER_REVERSAL = "register_reversal"
NIGHT_EXPORT = "night_export"
OVER_LIMIT = "over_limit"
PHYSICAL_KINDS = (REGISTER_REVERSAL, NIGHT_EXPORT, OVER_LIMIT)
FORECAST_DEVIATION = "forecast_deviation"
SHORT_DELIVERY = "short_delivery"
FAULT_KINDS = (*PHYSICAL_KINDS, FORECAST_DEVIATION, SHORT_DELIVERY)
METER_KINDS = (REGISTER_REVERSAL, NIGHT_EXPORT, SHORT_DELIVERY)
STATISTICAL_KINDS = (FORECAST_DEVIATION, SHORT_DELIVERY)
"""Caught by the forecaster's statistics over history, not by a rule on one reading."""
DEVIATION_EXTRA_WH = 600
DEVIATION_INTERVALS = 12
REVERSAL_WH = 100
OVER_LIMIT_EXTRA_WH = 500
NIGHT_EXPORT_WH = 150
NIGHT_EXPORT_INTERVALS = 4
_STREAM_FAULTS = 10  # seed stream (scenario streams are 0..3)
_REASON_KIND = {
    "register_backwards": REGISTER_REVERSAL,  # ledger.settlement.FlagReason values
    "beyond_limit": OVER_LIMIT,
}


@dataclass(frozen=True)
class InjectedFault:
    """A fault of ``kind`` in household ``agent`` over the intervals ``[interval, end)``."""

    agent: str
    kind: str
    interval: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "kind": self.kind, "interval": self.interval, "end": self.end}


@dataclass(frozen=True)
class Detection:
    """A flag read back from the log: household, kind, interval, and which entry kind."""

    agent: str
    kind: str
    interval: int
    source: str  # "flag" (the ledger's checks) or "anomaly" / "detector" (history)


def _night_slots(pv: Sequence[int], day: int, season: int) -> list[int]:
    """Slots of the day from which ``NIGHT_EXPORT_INTERVALS`` intervals, and two either
    side, have no PV on that day."""
    base = day * season
    ok = []
    for slot in range(3, season - NIGHT_EXPORT_INTERVALS - 3):
        window = pv[base + slot - 2 : base + slot + NIGHT_EXPORT_INTERVALS + 2]
        if not any(window):
            ok.append(slot)
    return ok


def plan_faults(scenario: Scenario, *, rate: float, seed: int) -> tuple[InjectedFault, ...]:
    """The faults of the run: each simulated household-day gets one with probability
    ``rate`` (seeded), of a kind the household can have, at a seeded slot of the day (never
    its first or last slot, so every fault has readings on both sides in the log)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"the fault rate must lie in [0, 1], got {rate}")
    interval_s = scenario.interval_s
    season = 86_400 // interval_s
    days = scenario.simulated_intervals // season
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_FAULTS,)))
    faults: list[InjectedFault] = []
    for hh in scenario.households:
        busy_until = 0  # days a short-delivery fault already takes up
        for d in range(days):
            if rng.random() >= rate or d < busy_until:
                continue
            day = scenario.history_intervals // season + d
            night = _night_slots(hh.pv_wh, day, season)
            pv_only = hh.spec.pv_peak_w > 0 and hh.spec.battery is None
            can_night = pv_only and bool(night)
            kinds = (
                [*PHYSICAL_KINDS, FORECAST_DEVIATION]
                if can_night
                else [REGISTER_REVERSAL, OVER_LIMIT, FORECAST_DEVIATION]
            )
            if pv_only and d + SHORT_WINDOW_DAYS <= days:
                kinds.append(SHORT_DELIVERY)
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == SHORT_DELIVERY:  # whole days from midnight
                slot, length = 0, SHORT_WINDOW_DAYS * season
                busy_until = d + SHORT_WINDOW_DAYS
            elif kind == NIGHT_EXPORT:
                slot, length = night[int(rng.integers(len(night)))], NIGHT_EXPORT_INTERVALS
            elif kind == FORECAST_DEVIATION:  # within the day, ending before its last hours
                slot = int(rng.integers(4, season - DEVIATION_INTERVALS - 8))
                length = DEVIATION_INTERVALS
            else:
                slot, length = int(rng.integers(2, season - 2)), 1
            start = int(scenario.interval_start(day * season + slot).timestamp())
            faults.append(InjectedFault(hh.spec.agent_id, kind, start, start + length * interval_s))
    return tuple(faults)


def inject_profiles(scenario: Scenario, faults: Iterable[InjectedFault]) -> Scenario:
    """The scenario with the profile-level faults (over limit, extra load) applied."""
    base = int(scenario.start.timestamp())
    limit = energy_limit_wh(DEFAULT_MAX_POWER_W, scenario.interval_s) + OVER_LIMIT_EXTRA_WH
    bumps: dict[str, list[int]] = {}
    loads: dict[str, list[int]] = {}
    for f in faults:
        k = (f.interval - base) // scenario.interval_s
        if f.kind == OVER_LIMIT:
            bumps.setdefault(f.agent, []).append(k)
        elif f.kind == FORECAST_DEVIATION:
            n = (f.end - f.interval) // scenario.interval_s
            loads.setdefault(f.agent, []).extend(range(k, k + n))
    profiles: list[HouseholdProfile] = []
    for hh in scenario.households:
        at = bumps.get(hh.spec.agent_id, [])
        extra_load = loads.get(hh.spec.agent_id, [])
        if not at and not extra_load:
            profiles.append(hh)
            continue
        demand = list(hh.demand_wh)
        for k in extra_load:
            demand[k] += DEVIATION_EXTRA_WH
        battery = hh.spec.battery
        cover = 0 if battery is None else battery.max_discharge_w * scenario.interval_s // 3600
        for k in at:  # beyond the limit whatever the PV and the battery cover
            demand[k] += limit + hh.pv_wh[k] + cover
        profiles.append(replace(hh, demand_wh=tuple(demand)))
    return replace(scenario, households=tuple(profiles))


def undeclared_export_wh(
    faults: Iterable[InjectedFault], scenario: Scenario | None = None
) -> dict[str, int]:
    """Per household, the energy its meter exports beyond its profile: its injected
    night export, less (given the ``scenario``) the export a short-delivery fault cut."""
    out: dict[str, int] = {}
    profiles = {} if scenario is None else {hh.spec.agent_id: hh for hh in scenario.households}
    for f in faults:
        if f.kind == NIGHT_EXPORT:
            out[f.agent] = out.get(f.agent, 0) + NIGHT_EXPORT_WH * NIGHT_EXPORT_INTERVALS
        elif f.kind == SHORT_DELIVERY and f.agent in profiles and scenario is not None:
            hh = profiles[f.agent]
            first = (f.interval - int(scenario.start.timestamp())) // scenario.interval_s
            count = (f.end - f.interval) // scenario.interval_s
            cut = sum(
                max(p - d, 0)
                for p, d in zip(
                    hh.pv_wh[first : first + count],
                    hh.demand_wh[first : first + count],
                    strict=True,
                )
            )
            out[f.agent] = out.get(f.agent, 0) - cut
    return out


class FaultyMeter:
    """A meter with the household's meter-level faults: a register reversal (import
    ``REVERSAL_WH`` below the reading one interval earlier), night export (the export
    register grows with no PV behind it) and short delivery (what the household would
    export in the fault's days taken off its export and PV registers: curtailed)."""

    def __init__(self, inner: Meter, faults: Iterable[InjectedFault], *, interval_s: int) -> None:
        self.inner = inner
        self.interval_s = interval_s
        self._reversals = {f.end for f in faults if f.kind == REGISTER_REVERSAL}
        self._exports = [
            f.interval + k * interval_s
            for f in faults
            if f.kind == NIGHT_EXPORT
            for k in range((f.end - f.interval) // interval_s)
        ]
        self._import_at: dict[int, int] = {}  # the import register reported at each time
        self._cuts = [(f.interval, f.end) for f in faults if f.kind == SHORT_DELIVERY]
        self._last: tuple[int, int] | None = None  # the inner meter's last (time, export)
        self._cut_wh = 0  # export (and PV) curtailed so far

    async def read(self) -> MeterReading:
        reading = await self.inner.read()
        t = reading.time
        if self._last is not None and t > self._last[0]:
            since, exported = self._last
            if any(a <= since and t <= b for a, b in self._cuts):
                self._cut_wh += reading.export_wh - exported
        if self._last is None or t > self._last[0]:
            self._last = (t, reading.export_wh)
        if self._cut_wh:
            reading = replace(
                reading,
                export_wh=reading.export_wh - self._cut_wh,
                pv_wh=reading.pv_wh - self._cut_wh,
            )
        added = NIGHT_EXPORT_WH * sum(1 for k in self._exports if k + self.interval_s <= t)
        if added:
            reading = replace(reading, export_wh=reading.export_wh + added)
        before = self._import_at.get(t - self.interval_s)
        if t in self._reversals and before is not None:
            reading = replace(reading, import_wh=max(before - REVERSAL_WH, 0))
        self._import_at.setdefault(t, reading.import_wh)
        return reading


def detections_from_log(store: LedgerStore, *, interval_s: int) -> list[Detection]:
    """The flags in the log: ``flag`` entries (reversal, over limit), ``anomaly`` entries,
    and, when the log holds no ``anomaly`` entry, the night-export detector over the
    logged readings (the same rule the forecaster applies)."""
    found: list[Detection] = []
    readings: dict[str, dict[int, ReadingBody]] = {}
    anomalies = False
    for entry in store.iter_entries():
        if entry.kind == EntryKind.FLAG:
            flag = parse_flag(json.loads(entry.data))
            kind = _REASON_KIND.get(flag.reason.value)
            if kind is not None:
                found.append(Detection(flag.agent, kind, flag.interval, "flag"))
        elif entry.kind == EntryKind.ANOMALY:
            anomalies = True
            obj = json.loads(entry.data)["signed"]["body"]
            found.append(Detection(obj["agent"], obj["anomaly"], int(obj["interval"]), "anomaly"))
        elif entry.kind == EntryKind.READING and entry.agent is not None:
            obj = json.loads(entry.data)
            wire = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
            message = decode_message(wire)
            readings.setdefault(entry.agent, {})[message.header.interval] = message.body_as(
                ReadingBody
            )
    if not anomalies:
        for agent in sorted(readings):
            for episode in night_export_flags(agent, readings[agent], interval_s=interval_s):
                found.append(Detection(agent, NIGHT_EXPORT, episode.interval, "detector"))
    return found


def score_faults(
    faults: Sequence[InjectedFault],
    detections: Sequence[Detection],
    *,
    interval_s: int,
    rate: float,
) -> dict[str, Any]:
    """Per kind: injected, caught (recall) and flags that match an injected fault
    (precision); None where a ratio has no denominator."""

    def matches(f: InjectedFault, d: Detection) -> bool:
        return (
            f.agent == d.agent
            and f.kind == d.kind
            and f.interval - interval_s <= d.interval < f.end + interval_s
        )

    kinds: dict[str, Any] = {}
    for kind in FAULT_KINDS:
        injected = [f for f in faults if f.kind == kind]
        flagged = [d for d in detections if d.kind == kind]
        caught = sum(1 for f in injected if any(matches(f, d) for d in flagged))
        true = sum(1 for d in flagged if any(matches(f, d) for f in injected))
        kinds[kind] = {
            "injected": len(injected),
            "caught": caught,
            "flags": len(flagged),
            "true_flags": true,
            "recall": round(caught / len(injected), 4) if injected else None,
            "precision": round(true / len(flagged), 4) if flagged else None,
        }
    return {
        "rate": rate,
        "injected": len(faults),
        "kinds": kinds,
        "statistical": list(STATISTICAL_KINDS),
    }
