"""The dashboard over a PostgreSQL ledger, its read model in a schema of the same database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dashsimkit import HOUSEHOLDS, TOKEN, get_json, operator_cookie, started
from wattmesh.broker.transport import BrokerAddress
from wattmesh.dashboard.app import DashboardSettings
from wattmesh.ledger.store import LedgerStore
from wattmesh.sim.simulate import SimulationConfig, run_simulation

pytestmark = pytest.mark.slow


@pytest.mark.postgres
async def test_a_postgresql_ledger_with_its_read_model_beside_it(
    pg_url: str, tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    report = await run_simulation(
        SimulationConfig(
            households=len(HOUSEHOLDS), days=1, seed=7, pv_share=0.5, forecaster="naive",
            history_days=7, workdir=tmp_path, gate_timeout_s=30.0, broker=mosquitto.url,
            db_url=pg_url,
        )
    )  # fmt: skip
    assert report["verified"] is True
    client = await started(DashboardSettings(ledger_url=pg_url, operator_token=TOKEN))
    try:
        overview = await get_json(client, "/api/overview")
        assert overview["ledger"]["trades"] == report["trades"]
        health = await get_json(client, "/api/health")
        assert health["ledger"]["tree_size"] == report["ledger_entries"]
        operator = await operator_cookie(client)
        table = await get_json(client, "/api/households", cookie=operator)
        assert len(table["households"]) == len(HOUSEHOLDS)
        store = LedgerStore.read_only(pg_url)
        try:
            tables = sa.inspect(store.engine).get_table_names(schema="wattmesh_dashboard")
        finally:
            store.close()
        assert "interval_stats" in tables  # the read model in its own schema
    finally:
        await client.close()
