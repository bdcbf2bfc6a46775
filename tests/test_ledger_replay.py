"""``ledger verify`` re-executes the market from the log (ledger/replay.py).

The dishonest operator here writes wrong entries and signs them itself: its ledger's
append is wrapped so that one entry of a close is changed, added or dropped before
the close is hashed, stored and checkpointed. Hashes, signatures, the tree, the
checkpoint references and the signed checkpoints all hold; only the replay can see
that the entry is not what the logged orders, readings and parameters make. SQLite
and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, households, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side, canonical_bytes
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import EntryKind, NewEntry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import VerifyReport, verify_ledger

FEE = Mechanism("uniform", MarketRules(network_fee_micro_per_kwh=10_000))
SCHEDULE = TariffSchedule.flat(TARIFF)
Edit = Callable[[list[NewEntry]], list[NewEntry] | None]
"""A close's entries -> the dishonest ones, or None to leave this close alone."""


def _run(ledger: Ledger, houses: dict[str, House]) -> None:
    """Four intervals: trades with a fee; h003's reading at T0 + STEP missing (an
    estimate, then corrections when its next reading arrives); h001's key rotated;
    the last interval closes without trading."""
    a, b, c = houses["h001"], houses["h002"], houses["h003"]
    ledger.open_interval(T0, TARIFF)
    for house in (a, b, c):
        ledger.ingest(house.reading(T0))
    ledger.ingest(a.order(T0, Side.SELL, 500, 100_000))
    ledger.ingest(b.order(T0, Side.BUY, 300, 250_000))
    ledger.ingest(c.order(T0, Side.BUY, 400, 200_000))
    ledger.close_interval()
    a.meter(export_wh=450)
    b.meter(import_wh=300)
    c.meter(import_wh=420)
    ledger.open_interval(T0 + STEP, TARIFF)
    for house in (a, b):
        ledger.ingest(house.reading(T0 + STEP))
    ledger.ingest(b.order(T0 + STEP, Side.SELL, 200, 90_000))
    ledger.ingest(a.order(T0 + STEP, Side.BUY, 150, 280_000))
    ledger.close_interval()
    a.key = SigningKey.generate()
    ledger.register({"h001": a.key.verifying}, interval=T0 + 2 * STEP)
    a.meter(import_wh=150)
    b.meter(export_wh=210)
    c.meter(import_wh=380)
    ledger.open_interval(T0 + 2 * STEP, TARIFF)
    for house in (a, b, c):
        ledger.ingest(house.reading(T0 + 2 * STEP))
    ledger.ingest(c.order(T0 + 2 * STEP, Side.SELL, 100, 95_000))
    ledger.ingest(a.order(T0 + 2 * STEP, Side.BUY, 100, 260_000))
    ledger.close_interval()
    for house in (a, b, c):
        house.meter(import_wh=100)
    ledger.open_interval(T0 + 3 * STEP, TARIFF, trading=False)
    for house in (a, b, c):
        ledger.ingest(house.reading(T0 + 3 * STEP))
    ledger.close_interval()


def _ledger(
    db_url: str, edit: Edit | None = None, *, log_params: bool = True
) -> tuple[Ledger, list[int]]:
    """The scenario's ledger; with ``edit``, the first close it changes is logged so
    (the position of the first entry it changed is returned). ``log_params=False``:
    as the code before market_params entries."""
    houses = households("h001", "h002", "h003")
    ledger = Ledger(
        LedgerStore(db_url),
        market_id=MARKET,
        operator_key=SigningKey.generate(),
        mechanism=FEE,
        tariffs=SCHEDULE,
    )
    ledger.register({h.agent: h.key.verifying for h in houses.values()}, interval=T0)
    ledger._params_logged = not log_params
    changed: list[int] = []
    if edit is not None:
        append = ledger._append

        def dishonest(entries: list[NewEntry], interval: int, **kw: Any) -> Any:
            new = None if changed else edit(entries)
            if new is not None:
                changed.append(ledger.size + _first_change(entries, new))
                entries = new
            return append(entries, interval, **kw)

        ledger._append = dishonest  # type: ignore[method-assign]
    _run(ledger, houses)
    return ledger, changed


def _first_change(old: list[NewEntry], new: list[NewEntry]) -> int:
    """The first position where ``new`` differs from ``old`` (or the shorter one ends)."""
    for i, (x, y) in enumerate(zip(old, new, strict=False)):
        if x != y:
            return i
    return min(len(old), len(new))


def _obj(entry: NewEntry) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(entry.data)
    return obj


def _with(entry: NewEntry, **fields: Any) -> NewEntry:
    obj = _obj(entry) | fields
    return NewEntry(entry.kind, entry.interval, entry.agent, entry.agent_seq, canonical_bytes(obj))


def _change(kind: str, when: Callable[[dict[str, Any]], bool], **fields: Any) -> Edit:
    """Set ``fields`` in the first ``kind`` entry for which ``when`` holds."""

    def edit(entries: list[NewEntry]) -> list[NewEntry] | None:
        for i, entry in enumerate(entries):
            if entry.kind == kind and when(_obj(entry)):
                obj = _obj(entry)
                new = {k: (v(obj) if callable(v) else v) for k, v in fields.items()}
                return [*entries[:i], _with(entry, **new), *entries[i + 1 :]]
        return None

    return edit


def _failed(db_url: str, edit: Edit) -> tuple[VerifyReport, int]:
    ledger, changed = _ledger(db_url, edit)
    assert len(changed) == 1, "the edit found nothing to change"
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    ledger.store.close()
    assert not report.ok
    assert report.problem is not None and report.problem.startswith("replay: "), report.problem
    return report, changed[0]


def test_an_honest_ledger_replays(db_url: str) -> None:
    ledger, _ = _ledger(db_url)
    kinds = [e.kind for e in ledger.store.iter_entries()]
    assert kinds.count(EntryKind.MARKET_PARAMS) == 1
    assert EntryKind.CORRECTION in kinds and EntryKind.KEY_ROTATION in kinds
    causes = {
        json.loads(e.data)["cause"] for e in ledger.store.iter_entries() if e.kind == "posting"
    }
    assert {"network_fee", "estimate", "correction", "p2p_trade"} <= causes
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    assert (report.replayed, report.unparameterised) == (4, 0)
    assert verify_ledger(ledger.store, ledger.operator_key.verifying, replay=False).replayed is None
    ledger.store.close()


def _is(agent: str, interval: int | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda o: o.get("agent") == agent and interval in (None, o.get("interval"))


CASES: dict[str, tuple[Edit, str]] = {
    # a settlement whose import does not match the two readings that bracket it
    "import_wh": (_change("settlement", _is("h002"), import_wh=301), "import_wh is 301"),
    # a trade priced above retail and the buyer's limit
    "trade price": (
        _change("trade", lambda o: True, price_micro_per_kwh=TARIFF.retail_micro_per_kwh + 1),
        "price_micro_per_kwh is 300001",
    ),
    "trade quantity": (
        _change("trade", lambda o: True, quantity_wh=lambda o: o["quantity_wh"] + 1),
        "quantity_wh is",
    ),
    "trade seller": (_change("trade", lambda o: True, seller="h003"), 'seller is "h003"'),
    "clearing price": (
        _change("clearing", lambda o: True, price_micro_per_kwh=160_000),
        "price_micro_per_kwh is 160000",
    ),
    # the tariff is the logged schedule's, not what the clearing entry says
    "clearing tariff": (
        _change("clearing", lambda o: True, retail_micro_per_kwh=350_000),
        "retail_micro_per_kwh is 350000 in the log, 300000 replayed",
    ),
    "clearing fee": (
        _change("clearing", lambda o: True, network_fee_micro_per_kwh=0),
        "network_fee_micro_per_kwh is 0",
    ),
    # a posting charged to another household
    "posting account": (
        _change(
            "posting",
            _is("h002"),
            lines=lambda o: [
                {**x, "account": x["account"].replace("h002", "h003")} for x in o["lines"]
            ],
        ),
        "lines is",
    ),
    # a grid cost that is not quantity x tariff
    "grid cost": (
        _change("settlement", _is("h003"), grid_cost_micro=lambda o: o["grid_cost_micro"] + 7),
        "grid_cost_micro is",
    ),
    "seller's fee": (
        _change("settlement", _is("h001"), network_fee_micro=1),
        "network_fee_micro is 1",
    ),
    # h003 sent no reading at T0 + STEP: its T0 settlement cannot be metered
    "no bracketing reading": (
        _change("settlement", _is("h003", T0), basis="metered"),
        'basis is "metered"',
    ),
    "correction": (
        _change(
            "correction",
            _is("h003"),
            delta_grid_cost_micro=lambda o: o["delta_grid_cost_micro"] - 1,
        ),
        "delta_grid_cost_micro is",
    ),
    "correction energy": (
        _change("correction", _is("h003"), import_wh=lambda o: o["import_wh"] + 5),
        "import_wh is",
    ),
    "market params": (
        _change("market_params", lambda o: True, network_fee_micro_per_kwh=20_000),
        "network_fee_micro_per_kwh is 10000 in the log, 20000 replayed",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_entry_signed_by_the_operator_fails_naming_it(db_url: str, case: str) -> None:
    edit, says = CASES[case]
    report, changed = _failed(db_url, edit)
    assert says in str(report.problem), report.problem
    if case != "market params":  # that one shows at the clearing it lies about
        assert report.first_bad_entry == changed, report.problem
        assert f"entry {changed} " in str(report.problem)


def _drop_first(kind: str) -> Edit:
    def edit(entries: list[NewEntry]) -> list[NewEntry] | None:
        at = next((i for i, e in enumerate(entries) if e.kind == kind), None)
        return None if at is None else [*entries[:at], *entries[at + 1 :]]

    return edit


def _add_trade(entries: list[NewEntry]) -> list[NewEntry] | None:
    """A trade the mechanism would not make: h003 sells h002 100 Wh."""
    at = next((i for i, e in enumerate(entries) if e.kind == "trade"), None)
    if at is None:
        return None
    extra = _with(entries[at], seller="h003", quantity_wh=100)
    return [*entries[:at], extra, *entries[at:]]


def test_a_missing_trade_fails_where_it_belongs(db_url: str) -> None:
    """The interval's first trade dropped: the second one stands where the replay makes
    the first, and the entry there is named."""
    report, at = _failed(db_url, _drop_first("trade"))
    assert report.first_bad_entry == at
    assert f"entry {at} (trade for interval {T0}): buy_order is" in str(report.problem)


def test_a_trade_the_mechanism_would_not_make_fails(db_url: str) -> None:
    report, at = _failed(db_url, _add_trade)
    assert report.first_bad_entry == at
    assert "quantity_wh is 100 in the log, 300 replayed" in str(report.problem)


def test_a_missing_settlement_fails(db_url: str) -> None:
    report, at = _failed(db_url, _drop_first("settlement"))
    assert report.first_bad_entry == at
    assert "where the replay makes a settlement" in str(report.problem)


def test_an_extra_entry_at_the_end_of_a_close_fails(db_url: str) -> None:
    def extra(entries: list[NewEntry]) -> list[NewEntry] | None:
        postings = [e for e in entries if e.kind == "posting"]
        return None if not postings else [*entries, postings[0]]

    report, at = _failed(db_url, extra)
    assert report.first_bad_entry == at
    assert "is one the replay does not make" in str(report.problem)


def test_a_log_before_market_params_says_how_much_it_could_not_replay(db_url: str) -> None:
    """An older ledger logged no market_params: its closes are replayed as far as the
    log allows and counted; after a restart that logs them, in full."""
    houses = households("h001", "h002", "h003")
    operator = SigningKey.generate()
    ledger = new_ledger(db_url, operator, houses.values(), mechanism=FEE)
    ledger._params_logged = True  # as the code before market_params entries
    _run(ledger, houses)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    assert (report.replayed, report.unparameterised) == (4, 4)
    ledger.store.close()
    again = Ledger(LedgerStore(db_url), market_id="test", operator_key=operator, mechanism=FEE)
    for house in houses.values():
        house.meter(import_wh=50)
    again.open_interval(T0 + 4 * STEP, TARIFF)
    for house in houses.values():
        again.ingest(house.reading(T0 + 4 * STEP))
    again.ingest(houses["h002"].order(T0 + 4 * STEP, Side.BUY, 10, 250_000))
    again.close_interval()
    report = verify_ledger(again.store, again.operator_key.verifying)
    assert report.ok, report.problem
    assert (report.replayed, report.unparameterised) == (5, 4)
    again.store.close()


def test_before_market_params_wrong_money_still_fails(db_url: str) -> None:
    edit = _change("settlement", _is("h003"), grid_cost_micro=lambda o: o["grid_cost_micro"] + 7)
    ledger, changed = _ledger(db_url, edit, log_params=False)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and report.first_bad_entry == changed[0]
    assert "grid_cost_micro is" in str(report.problem)
    ledger.store.close()


def test_an_interval_off_the_tariff_schedule_is_refused(db_url: str) -> None:
    ledger, _ = _ledger(db_url)
    with pytest.raises(ValueError, match="tariff schedule"):
        ledger.open_interval(T0 + 9 * STEP, GridTariff(310_000, 80_000))
    ledger.store.close()
