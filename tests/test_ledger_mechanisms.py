"""A ledger configured with a mechanism, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from tests.ledgerkit import MARKET, crossing_interval
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger.clearing import Fill
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger


def _logged(ledger: Ledger, kind: str) -> list[dict[str, object]]:
    return [json.loads(e.data) for e in ledger.store.iter_entries() if e.kind == kind]


@pytest.mark.parametrize(
    ("mechanism", "trades"),
    [
        # Merit order b-a 300, c-a 200; midpoints (100k+250k)/2 and (100k+200k)/2.
        (Mechanism("pay-as-bid"), [("b", 300, 175_000), ("c", 200, 150_000)]),
        # (300k + 80k) / 2 = 190k; b and c share a's 500 Wh pro rata: 214.3 and 285.7.
        (Mechanism("mmr"), [("b", 214, 190_000), ("c", 286, 190_000)]),
        (
            Mechanism("uniform", MarketRules(k=Fraction(1))),
            [("b", 300, 200_000), ("c", 200, 200_000)],
        ),
    ],
    ids=["pay-as-bid", "mmr", "uniform-k1"],
)
def test_a_configured_mechanism_clears_logs_and_verifies(
    db_url: str, mechanism: Mechanism, trades: list[tuple[str, int, int]]
) -> None:
    operator = SigningKey.generate()
    ledger, _houses = crossing_interval(db_url, operator, mechanism)
    outcome = ledger.close_interval()
    assert [
        (f.buyer, f.quantity_wh, f.price_micro_per_kwh) for f in outcome.clearing.fills
    ] == trades
    assert all(isinstance(f, Fill) and f.seller == "a" for f in outcome.clearing.fills)
    (clearing,) = _logged(ledger, EntryKind.CLEARING)
    assert {key: clearing[key] for key in mechanism.to_json()} == mechanism.to_json()
    assert clearing["mechanism"] == mechanism.name
    logged = [
        (t["buyer"], t["quantity_wh"], t["price_micro_per_kwh"])
        for t in _logged(ledger, EntryKind.TRADE)
    ]
    assert logged == trades
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    root = ledger.root
    ledger.store.close()

    again = Ledger(
        LedgerStore(db_url), market_id=MARKET, operator_key=operator, mechanism=mechanism
    )
    assert again.root == root
    again.store.close()
    store = LedgerStore(db_url)
    with pytest.raises(ConfigError, match="mechanism"):
        Ledger(store, market_id=MARKET, operator_key=operator)  # the default is another one
    store.close()


def test_the_default_mechanism_logs_no_mechanism_field(db_url: str) -> None:
    ledger, _houses = crossing_interval(db_url, SigningKey.generate(), None)
    assert ledger.mechanism.is_default
    outcome = ledger.close_interval()
    assert outcome.clearing.price_micro_per_kwh == 150_000
    (clearing,) = _logged(ledger, EntryKind.CLEARING)
    assert not {"mechanism", "k", "network_fee_micro_per_kwh"} & set(clearing)
    ledger.store.close()
