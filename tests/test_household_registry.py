"""The operator's registry file: keys, revoked keys and connection limits, validated,
and the limits reaching the ledger's settlement flags (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ledgerkit import MARKET, STEP, T0, House
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.household_registry import Household, Registry, load_registry, write_registry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.settlement import FlagReason
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)
PEM = SigningKey.generate().verifying.pem().decode("ascii")


def _write(tmp_path: Path, households: Any) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"households": households}), encoding="utf-8")
    return path


def test_a_registry_round_trips_with_limits_and_revoked_keys(tmp_path: Path) -> None:
    a, b, lost = (SigningKey.generate().verifying for _ in range(3))
    registry = Registry(
        {
            "h001": Household("h001", a, max_power_w=3_680, revoked={lost.kid: "stolen"}),
            "h002": Household("h002", b),
        }
    )
    path = tmp_path / "registry.json"
    write_registry(path, registry)
    loaded = load_registry(path)
    assert {n: h.key.kid for n, h in loaded.households.items()} == {"h001": a.kid, "h002": b.kid}
    assert loaded.revoked == {"h001": {lost.kid: "stolen"}}
    assert loaded.households["h002"].max_power_w is None
    config = loaded.metering(MeteringConfig(backfill_window_s=3_600))
    assert config.limit_w("h001") == 3_680
    assert config.limit_w("h002") == DEFAULT_MAX_POWER_W
    assert config.backfill_window_s == 3_600
    write_registry(path, {"h003": a})  # plain keys, as before
    assert list(load_registry(path).households) == ["h003"]


@pytest.mark.parametrize(
    ("household", "problem"),
    [
        ({"agent": "h001", "public_key": PEM, "max_power_w": 0}, "household h001: 'max_power_w'"),
        ({"agent": "h001", "public_key": PEM, "max_power_w": -5}, "integer from 1 to"),
        ({"agent": "h001", "public_key": PEM, "max_power_w": True}, "got True"),
        ({"agent": "h001", "public_key": PEM, "max_power_w": "7000"}, "got '7000'"),
        ({"agent": "h001", "public_key": PEM, "max_power_w": 7000.0}, "got 7000.0"),
        ({"agent": "h001", "public_key": PEM, "max_power_w": 1_000_001}, "1000000 W"),
        ({"agent": "h001", "public_key": "no key"}, "household h001: 'public_key' is no valid"),
        ({"agent": "h/1", "public_key": PEM}, "entry 0: agent id 'h/1'"),
        ({"agent": 7, "public_key": PEM}, "entry 0: 'agent' must be a string"),
        ({"agent": "h001"}, "entry 0 needs 'agent' and 'public_key'"),
        ({"agent": "h001", "public_key": PEM, "limit": 1}, "may have only"),
        ({"agent": "h001", "public_key": PEM, "revoked_keys": {}}, "must be a list"),
        (
            {"agent": "h001", "public_key": PEM, "revoked_keys": [{"kid": "ab"}]},
            "household h001: each of 'revoked_keys' needs exactly 'kid' and 'reason'",
        ),
        (
            {
                "agent": "h001",
                "public_key": PEM,
                "revoked_keys": [{"kid": "AB" * 32, "reason": "x"}],
            },
            "household h001: revoked key: 'ABAB",
        ),
        (
            {
                "agent": "h001",
                "public_key": PEM,
                "revoked_keys": [{"kid": "ab" * 32, "reason": ""}],
            },
            "1-200 characters",
        ),
        (
            {
                "agent": "h001",
                "public_key": PEM,
                "revoked_keys": [{"kid": "ab" * 32, "reason": "x"}] * 2,
            },
            "revoked key abababababababab is listed twice",
        ),
    ],
)
def test_invalid_registry_entries_name_the_household_and_the_problem(
    tmp_path: Path, household: dict[str, Any], problem: str
) -> None:
    path = _write(tmp_path, [household])
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert problem in str(info.value)
    assert str(path) in str(info.value)


def test_invalid_registry_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    with pytest.raises(ConfigError, match="cannot read registry"):
        load_registry(path)
    path.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_registry(path)
    path.write_text('{"households": {}}')
    with pytest.raises(ConfigError, match="needs a 'households' list"):
        load_registry(path)
    twice = {"agent": "h001", "public_key": PEM}
    with pytest.raises(ConfigError, match="lists h001 twice"):
        load_registry(_write(tmp_path, [twice, twice]))


def test_a_households_own_limit_flags_a_reading_beyond_it(db_url: str, tmp_path: Path) -> None:
    """h001's connection carries 4,000 W (1,000 Wh in 15 minutes), h002 the default:
    the same 1,500 Wh is beyond h001's limit and settles for h002."""
    a, b = House("h001"), House("h002")
    path = _write(
        tmp_path,
        [
            {"agent": "h001", "public_key": a.key.verifying.pem().decode(), "max_power_w": 4_000},
            {"agent": "h002", "public_key": b.key.verifying.pem().decode()},
        ],
    )
    registry = load_registry(path)
    ledger = Ledger(
        LedgerStore(db_url),
        market_id=MARKET,
        operator_key=SigningKey.generate(),
        metering=registry.metering(),
    )
    assert ledger.register(registry.keys, interval=T0, revoked=registry.revoked) == 2
    ledger.open_interval(T0, TARIFF)
    for house in (a, b):
        ledger.ingest(house.reading(T0))
    ledger.close_interval()
    ledger.open_interval(T0 + STEP, TARIFF, trading=False)
    for house in (a, b):
        house.meter(import_wh=1_500)
        ledger.ingest(house.reading(T0 + STEP))
    outcome = ledger.close_interval()
    assert [(f.agent, f.interval, f.reason, f.limit_wh) for f in outcome.flags] == [
        ("h001", T0, FlagReason.BEYOND_LIMIT, 1_000)
    ]
    assert [(s.agent, s.import_wh) for s in outcome.settlements] == [("h002", 1_500)]
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    ledger.store.close()
