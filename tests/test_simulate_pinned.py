"""Seeded ``wattmesh simulate`` runs give the same ledger, byte for byte, as recorded.

The roots below were recorded before the architecture work of issue 12 (twins,
error tree, module moves), which must change no behaviour, wire byte or log entry:
each run covers a different part of the path (uniform pricing; MMR with time-of-use
tariffs and a network fee; pay-as-bid with home batteries). A deliberate change of
the wire format or the log records new roots here, in the same commit, saying why.

Issue 16 (verify replays the market) re-recorded all three: the log now holds a
``market_params`` entry (mechanism, fee, metering rules, tariff schedule) at the
start of the first close; every other entry is as before.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from wattmesh.broker.transport import BrokerAddress
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.sim.simulate import SimulationConfig, run_simulation

pytestmark = pytest.mark.slow

TOU = [
    {"start_hour_utc": 0, "retail_micro_per_kwh": 200_000, "feed_in_micro_per_kwh": 60_000},
    {"start_hour_utc": 7, "retail_micro_per_kwh": 300_000, "feed_in_micro_per_kwh": 80_000},
    {"start_hour_utc": 17, "retail_micro_per_kwh": 410_000, "feed_in_micro_per_kwh": 90_000},
]

RUNS: dict[str, tuple[dict[str, Any], str]] = {
    "uniform": ({"seed": 7}, "5e1d4bc44e1997bd82d1d6b2022f5ee8ed8829eff7a93418e31c7490fa3dc8d3"),
    "mmr-tou-fee": (
        {
            "seed": 3,
            "mechanism": Mechanism("mmr", MarketRules(network_fee_micro_per_kwh=10_000)),
            "tariffs": TariffSchedule.from_json(TOU),
        },
        "72e5c009ecb99ef6611fb00af59e1bd72e0902539d1cd7a944d0f369995fa07e",
    ),
    "pay-as-bid-batteries": (
        {
            "seed": 11,
            "battery_share": 0.5,
            "mechanism": Mechanism("pay-as-bid", MarketRules(k=Fraction(1, 3))),
        },
        "c17feef4ca856a2e3d73f38233ac02e7cca3282a474e7ef4006ebfee3fae4405",
    ),
}


@pytest.mark.parametrize("name", sorted(RUNS))
async def test_a_seeded_run_gives_the_recorded_ledger(
    name: str, tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    overrides, root = RUNS[name]
    config = SimulationConfig(
        households=5,
        days=1,
        pv_share=0.6,
        forecaster="naive",
        history_days=7,
        workdir=tmp_path,
        broker=mosquitto.url,
        gate_timeout_s=30.0,
        **overrides,
    )
    report = await run_simulation(config)
    assert report["verified"] is True, report["verify_problem"]
    assert report["trades"] > 0
    assert report["ledger_root"] == root
