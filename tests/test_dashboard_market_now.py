"""The overview's current interval: from the bus when a broker is heard, else from the log;
a countdown only for a market on the wall clock. Its "last" interval is the last
trading one (a closing round, which only collects readings, is not).

A real ledger (SQLite, real keys): two trading intervals and a closing round, folded
into a real read model; the listener's side is tested in test_dashboard_live.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ledgerkit import STEP, T0, TARIFF, House, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey
from wattmesh.dashboard import queries
from wattmesh.dashboard.queries import HEARD_STALE_S, Heard, market_now
from wattmesh.dashboard.readmodel import ReadModel
from wattmesh.ledger.store import LedgerStore


@pytest.fixture
def model(tmp_path: Path) -> ReadModel:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    ledger = new_ledger(url, SigningKey.generate(), houses.values())
    _run_two_intervals(ledger, houses)
    closing = T0 + 2 * STEP  # as simulate's last round: readings only, no clearing
    ledger.open_interval(closing, TARIFF, trading=False)
    for house in houses.values():
        ledger.ingest(house.reading(closing))
    assert ledger.close_interval().settlements  # it settles the last trading interval
    ledger.store.close()
    rm = ReadModel(f"sqlite:///{tmp_path / 'model.db'}")
    store = LedgerStore.read_only(url)
    try:
        rm.sync(store)
    finally:
        store.close()
    return rm


def test_last_is_the_last_trading_interval_not_the_closing_round(model: ReadModel) -> None:
    overview = queries.overview(model, now_s=T0 + 3 * STEP)
    assert overview["last"]["interval"] == T0 + STEP
    assert queries.market_series(model)["intervals"] == [T0, T0 + STEP]


def test_without_a_broker_a_market_long_closed_is_idle(model: ReadModel) -> None:
    """The lead's case: a simulation's log (2025) seen today showed a wall-clock interval
    and a countdown beside "last closed 2025-06-30"."""
    overview = queries.overview(model, now_s=T0 + 400 * 86_400)
    assert overview["market"] == {"state": "idle", "clock": None}
    assert (overview["current_interval"], overview["next_close_s"]) == (None, None)
    assert overview["interval_s"] == STEP


def test_without_a_broker_a_market_that_just_closed_runs_on_the_wall_clock(
    model: ReadModel,
) -> None:
    now = T0 + 2 * STEP + 100  # the last trading interval, T0 + STEP, closed just now
    overview = queries.overview(model, now_s=now)
    assert overview["market"] == {"state": "open", "clock": "wall"}
    assert overview["current_interval"] == T0 + 2 * STEP
    assert overview["next_close_s"] == T0 + 3 * STEP
    later = queries.overview(model, now_s=T0 + 4 * STEP)  # two intervals without a clearing
    assert later["market"]["state"] == "idle"


def test_what_the_bus_said_comes_before_the_log(model: ReadModel) -> None:
    simulated = Heard(T0 + STEP, STEP, "open", heard_s=T0 + 400 * 86_400)
    overview = queries.overview(model, now_s=T0 + 400 * 86_400 + 5, heard=simulated)
    assert overview["market"] == {"state": "open", "clock": "simulated"}
    assert (overview["current_interval"], overview["next_close_s"]) == (T0 + STEP, None)


@pytest.mark.parametrize(
    ("heard", "now_s", "expected"),
    [
        # on the wall clock: the announced interval is now's; cleared early, still now's
        (Heard(T0, STEP, "open", T0), T0 + 10, ("open", "wall", T0, T0 + STEP)),
        (Heard(T0, STEP, "cleared", T0 + 5), T0 + 800, ("open", "wall", T0, T0 + STEP)),
        # a wall-clock market that stopped: its last interval is past
        (Heard(T0, STEP, "cleared", T0 + 5), T0 + STEP + 1, ("idle", None, None, None)),
        # simulated time, heard just now: the interval without a countdown
        (Heard(T0, STEP, "cleared", T0 + 10**7), T0 + 10**7 + 1, ("open", "simulated", T0, None)),
        # simulated time, but nothing heard for a while: idle
        (
            Heard(T0, STEP, "open", T0 + 10**7),
            T0 + 10**7 + HEARD_STALE_S + 1,
            ("idle", None, None, None),
        ),
        # the closing round: the market closed
        (Heard(T0, STEP, "closed", T0), T0 + 10, ("idle", None, None, None)),
    ],
)
def test_market_now(heard: Heard, now_s: int, expected: tuple[object, ...]) -> None:
    market = market_now(heard, now_s=now_s, last_closed=None, interval_s=STEP)
    got = (market["state"], market["clock"], market["current_interval"], market["next_close_s"])
    assert got == expected
    assert market["interval_s"] == STEP
