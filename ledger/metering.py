"""Settlement orchestration: which readings settle which interval, estimates, corrections.

No I/O: :class:`Metering` keeps, per household, the signed readings it still needs and
the intervals settled on estimates, and turns each gate closure into events that the
ledger logs (:mod:`ledger.entries`). Its state is rebuilt from the log on restart.

Interval ``p`` is settled when the interval after it closes, from the household's
readings at the start of ``p`` and at the start of the next interval ``c``.

- Both readings known: settled as metered, unless the registers went backwards, the
  meter time did not advance, or more energy passed than the connection can carry
  (``max_power_w`` over the time between the intervals the two readings belong to:
  their interval starts, never the meter's clock, so a backfilled reading keeps its
  place and a meter clock cannot widen the bound); then it is flagged and not settled.
- The reading at ``c`` missing: settled on an estimate, flagged ``estimated``. The
  estimate is the import and export of the household's last metered interval, or,
  without one, its traded position (import = bought, export = sold: no grid deviation).
- When a reading arrives that bounds a run of estimated intervals on both sides (the
  household's next reading in time, or a late, backfilled one), the run's metered
  import and export (the difference of the two readings) are spread evenly over its
  intervals (integer Wh; the remainder one Wh each to the earliest intervals), and
  each changed interval gets a correction: the difference, never an update. A run of
  one interval is then exact and final (basis metered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass, field, replace
from typing import Any, NamedTuple

from wattmesh.broker.connection import DEFAULT_MAX_POWER_W, energy_limit_wh
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.settlement import (
    Basis,
    FlagReason,
    Registers,
    Settlement,
    check_registers,
    traded_position,
    with_energy,
)

__all__ = ["MeteringConfig", "Revision"]


@dataclass(frozen=True)
class MeteringConfig:
    """Connection limits and how long estimates stay open for backfilled readings."""

    default_max_power_w: int = DEFAULT_MAX_POWER_W
    max_power_w: Mapping[str, int] = field(default_factory=dict)  # per household
    backfill_window_s: int = 7 * 86_400

    def limit_w(self, agent: str) -> int:
        return self.max_power_w.get(agent, self.default_max_power_w)


@dataclass(frozen=True)
class Revision:
    """A settlement (``before`` is None) or a correction of an earlier one."""

    after: Settlement
    before: Settlement | None
    basis: Basis
    end_interval: int  # the interval whose reading closes it
    tariff: GridTariff


class Bracket(NamedTuple):
    """The two readings around a run of intervals, and the time between their intervals."""

    start: Registers
    end: Registers
    elapsed_s: int  # the end reading's interval start minus the start reading's


@dataclass(frozen=True)
class Flag:
    """An interval of a household that is not settled, and why."""

    agent: str
    interval: int
    end_interval: int
    reason: FlagReason
    import_wh: int  # register differences over the bracket (may be negative)
    export_wh: int
    elapsed_s: int  # between the intervals of the two readings (not meter time)
    limit_wh: int


@dataclass
class _Open:
    """An interval settled on an estimate (or about to be settled: ``settlement`` None)."""

    interval: int
    end: int
    tariff: GridTariff
    settlement: Settlement | None


@dataclass
class _House:
    readings: dict[int, Registers] = field(default_factory=dict)  # actual, by interval
    open: dict[int, _Open] = field(default_factory=dict)
    last_flows: tuple[int, int] | None = None  # import, export of the last metered interval


class Metering:
    """Per-household meter state; each method returns the events to log."""

    def __init__(self, config: MeteringConfig | None = None) -> None:
        self.config = config or MeteringConfig()
        self._houses: dict[str, _House] = {}
        self.last_settled: int | None = None
        self._pending: dict[tuple[str, int], Settlement] = {}  # traded positions, in close

    def copy(self) -> Metering:
        """An independent copy, to work on until the interval is committed."""
        twin = Metering(self.config)
        twin.last_settled = self.last_settled
        twin._houses = {
            agent: _House(
                dict(h.readings), {at: replace(o) for at, o in h.open.items()}, h.last_flows
            )
            for agent, h in self._houses.items()
        }
        return twin

    def _house(self, agent: str) -> _House:
        return self._houses.setdefault(agent, _House())

    def awaits(self, agent: str, interval: int) -> bool:
        """Whether a late reading of ``agent`` for ``interval`` would fill a gap."""
        house = self._houses.get(agent)
        if house is None or interval in house.readings:
            return False
        return any(interval in (o.interval, o.end) for o in house.open.values())

    def last_reading(self, agent: str) -> Registers | None:
        house = self._houses.get(agent)
        if house is None or not house.readings:
            return None
        return house.readings[max(house.readings)]

    def close(
        self,
        *,
        interval: int,
        readings: Mapping[str, Registers],
        late: Mapping[tuple[str, int], Registers],
        settle: tuple[int, GridTariff, tuple[Fill, ...]] | None,
        network_fee_micro_per_kwh: int = 0,
    ) -> tuple[list[Revision], list[Flag]]:
        """Gate closure of ``interval``: take its readings and late ones, settle ``settle``.

        ``settle`` is the previous traded interval with its tariff and fills (None when
        there is none, or it was settled already); ``network_fee_micro_per_kwh`` the
        market's fee on those fills (:func:`ledger.settlement.traded_position`).
        """
        revisions: list[Revision] = []
        flags: list[Flag] = []
        touched: set[tuple[str, int]] = set()
        for (agent, at), registers in sorted(late.items()):
            self._house(agent).readings[at] = registers
            touched.add((agent, at))
        for agent in sorted(readings):
            self._house(agent).readings[interval] = readings[agent]
            touched.add((agent, interval))
        if settle is not None and (self.last_settled is None or settle[0] > self.last_settled):
            p, tariff, fills = settle
            self.last_settled = p
            own: dict[str, list[Fill]] = {}
            for f in fills:
                own.setdefault(f.buyer, []).append(f)
                if f.seller != f.buyer:
                    own.setdefault(f.seller, []).append(f)
            for agent in sorted(self._houses):
                house = self._houses[agent]
                if any(at <= p for at in house.readings):  # it has a baseline
                    house.open[p] = _Open(p, interval, tariff, None)
                    touched.add((agent, interval))
                    self._pending[(agent, p)] = traded_position(
                        agent, p, own.get(agent, []), network_fee_micro_per_kwh
                    )
        for agent, at in sorted(touched):
            self._revise(agent, at, revisions, flags)
        for agent in sorted(self._houses):
            self._estimate_pending(agent, revisions)
        self._pending.clear()
        self.prune(interval)
        return revisions, flags

    def _revise(self, agent: str, at: int, revisions: list[Revision], flags: list[Flag]) -> None:
        """Reconcile the runs of open intervals that end or start at the reading ``at``."""
        house = self._houses[agent]
        for run in _runs_touching(house, at):
            left, right = run[0].interval, run[-1].end
            start, end = house.readings[left], house.readings[right]
            elapsed_s = right - left
            limit_w = self.config.limit_w(agent)
            reason = check_registers(start, end, max_power_w=limit_w, elapsed_s=elapsed_s)
            if reason is not None:
                flagged = Bracket(start, end, elapsed_s)
                self._flag(agent, run, bracket=flagged, reason=reason, flags=flags)
                continue
            shares_in = _spread(end.import_wh - start.import_wh, len(run))
            shares_out = _spread(end.export_wh - start.export_wh, len(run))
            basis = Basis.METERED if len(run) == 1 else Basis.ESTIMATED
            for item, imp, exp in zip(run, shares_in, shares_out, strict=True):
                before = item.settlement
                after = self._settle(agent, item, imp, exp)
                if before is None or before != after or basis is Basis.METERED:
                    revisions.append(Revision(after, before, basis, item.end, item.tariff))
                if basis is Basis.METERED:
                    del house.open[item.interval]
                    if before is None:
                        house.last_flows = (imp, exp)
                else:
                    item.settlement = after

    def _flag(
        self,
        agent: str,
        run: list[_Open],
        *,
        bracket: Bracket,
        reason: FlagReason,
        flags: list[Flag],
    ) -> None:
        """Flag the run's intervals not settled yet; earlier estimates stand as they are."""
        house = self._houses[agent]
        start, end, elapsed_s = bracket
        for item in run:
            if item.settlement is None:
                flags.append(
                    Flag(
                        agent,
                        item.interval,
                        item.end,
                        reason,
                        end.import_wh - start.import_wh,
                        end.export_wh - start.export_wh,
                        elapsed_s,
                        energy_limit_wh(self.config.limit_w(agent), elapsed_s),
                    )
                )
                del house.open[item.interval]

    def _settle(self, agent: str, item: _Open, import_wh: int, export_wh: int) -> Settlement:
        """The interval's settlement for this energy: its trades (and their fee) as
        cleared, from the traded position of this close or the earlier estimate."""
        base = item.settlement
        if base is None:
            base = self._pending.get((agent, item.interval))
        if base is None:
            base = traded_position(agent, item.interval, ())
        return with_energy(base, import_wh=import_wh, export_wh=export_wh, tariff=item.tariff)

    def _estimate_pending(self, agent: str, revisions: list[Revision]) -> None:
        """Settle on the estimate rule every interval that no reading closed."""
        house = self._houses[agent]
        for item in sorted(house.open.values(), key=lambda o: o.interval):
            if item.settlement is not None:
                continue
            traded = self._settle(agent, item, 0, 0)
            imp, exp = house.last_flows or (traded.bought_wh, traded.sold_wh)
            item.settlement = with_energy(traded, import_wh=imp, export_wh=exp, tariff=item.tariff)
            revisions.append(
                Revision(item.settlement, None, Basis.ESTIMATED, item.end, item.tariff)
            )

    def prune(self, interval: int) -> None:
        """Forget estimates older than the backfill window, and readings no run needs."""
        oldest = interval - self.config.backfill_window_s
        for house in self._houses.values():
            for at in [at for at in house.open if at < oldest]:
                del house.open[at]
            if not house.readings:
                continue
            keep_from = max(house.readings)
            if house.open:
                first = min(house.open)
                anchors = [at for at in house.readings if at <= first]
                keep_from = max(anchors) if anchors else first
            for at in [at for at in house.readings if at < keep_from]:
                del house.readings[at]

    # --- snapshots (ledger._snapshot) -----------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The meter state as JSON values (integers and strings), in a canonical order
        (nothing here depends on the order of the maps: closes iterate them sorted)."""
        houses = {}
        for agent, h in sorted(self._houses.items()):
            readings = [
                [at, r.meter_time, r.import_wh, r.export_wh] for at, r in sorted(h.readings.items())
            ]
            estimates = [
                [
                    at,
                    o.interval,
                    o.end,
                    o.tariff.retail_micro_per_kwh,
                    o.tariff.feed_in_micro_per_kwh,
                    None if o.settlement is None else list(astuple(o.settlement)),
                ]
                for at, o in sorted(h.open.items())
            ]
            flows = None if h.last_flows is None else list(h.last_flows)
            houses[agent] = [readings, estimates, flows]
        return {"last_settled": self.last_settled, "houses": houses}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: MeteringConfig | None) -> Metering:
        """The meter state :meth:`to_state` describes, under ``config``."""
        metering = cls(config)
        metering.last_settled = state["last_settled"]
        for agent, (readings, estimates, flows) in state["houses"].items():
            metering._houses[agent] = _House(
                {at: Registers(t, i, e) for at, t, i, e in readings},
                {
                    at: _Open(
                        interval,
                        end,
                        GridTariff(retail, feed_in),
                        None if fields is None else Settlement(*fields),
                    )
                    for at, interval, end, retail, feed_in, fields in estimates
                },
                None if flows is None else (flows[0], flows[1]),
            )
        return metering

    # --- restore -------------------------------------------------------------------

    def restore_reading(self, agent: str, interval: int, registers: Registers) -> None:
        self._house(agent).readings[interval] = registers

    def restore_settlement(
        self, settlement: Settlement, basis: Basis, *, end_interval: int, tariff: GridTariff
    ) -> None:
        """Replay a logged settlement."""
        self._restore(settlement, basis, end_interval=end_interval, tariff=tariff, first=True)

    def restore_correction(
        self, settlement: Settlement, basis: Basis, *, end_interval: int, tariff: GridTariff
    ) -> None:
        """Replay a logged correction (its revised settlement)."""
        self._restore(settlement, basis, end_interval=end_interval, tariff=tariff, first=False)

    def _restore(
        self,
        settlement: Settlement,
        basis: Basis,
        *,
        end_interval: int,
        tariff: GridTariff,
        first: bool,
    ) -> None:
        s = settlement
        house = self._house(s.agent)
        self.last_settled = max(self.last_settled or s.interval, s.interval)
        if basis is Basis.METERED:
            house.open.pop(s.interval, None)
            if first:
                house.last_flows = (s.import_wh, s.export_wh)
        else:
            house.open[s.interval] = _Open(s.interval, end_interval, tariff, s)

    def restore_flag(self, flag: Flag) -> None:
        self._house(flag.agent)
        self.last_settled = max(self.last_settled or flag.interval, flag.interval)


def _spread(total_wh: int, parts: int) -> list[int]:
    """``total_wh`` in ``parts`` integer shares, the remainder to the earliest ones."""
    share, rest = divmod(total_wh, parts)
    return [share + (1 if i < rest else 0) for i in range(parts)]


def _runs_touching(house: _House, at: int) -> list[list[_Open]]:
    """The runs of open intervals, bounded by known readings on both sides, that start
    or end at the reading ``at``."""
    if at not in house.readings:
        return []
    before = [k for k in house.readings if k < at]
    lefts = [max(before), at] if before else [at]
    runs = []
    for left in lefts:
        run: list[_Open] = []
        item = house.open.get(left)
        while item is not None:
            run.append(item)
            if item.end in house.readings:
                break
            item = house.open.get(item.end)
        if run and run[-1].end in house.readings and at in (left, run[-1].end):
            runs.append(run)
    return runs
