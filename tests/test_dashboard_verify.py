"""The dashboard verifies the ledger it shows: at start and every ``verify_every_s``, in
the background, recording the result (ok, problem, tree size, key id, time) in the read
model and pushing it to browsers as a ``health`` event. A real simulated ledger, and a
copy of it with one entry rewritten (as an admin who dropped the append-only triggers
could) that fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiohttp import DummyCookieJar, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from tests.dashsimkit import TOKEN, Client, SimLedger, check_shape, get_json, simulate_ledger
from tests.ledgerkit import drop_append_only_triggers
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.transport import BrokerAddress
from wattmesh.dashboard.app import DashboardSettings, make_app
from wattmesh.dashboard.readmodel import ReadModel

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(tmp_path_factory: pytest.TempPathFactory, mosquitto: BrokerAddress) -> SimLedger:
    return await simulate_ledger(tmp_path_factory.mktemp("dash-verify"), mosquitto)


def _settings(ledger: Path, tmp_path: Path, **overrides: Any) -> DashboardSettings:
    base: dict[str, Any] = {
        "ledger_url": f"sqlite:///{ledger}",
        "read_model_url": f"sqlite:///{tmp_path / 'read-model.db'}",
        "operator_token": TOKEN,
    }
    return DashboardSettings(**{**base, **overrides})


async def _start(settings: DashboardSettings) -> Client:
    client: Client = TestClient(TestServer(make_app(settings)), cookie_jar=DummyCookieJar())
    await client.start_server()
    return client


async def _verified(client: Client) -> dict[str, Any]:
    """The server's verify result: in the overview already, or else the health event
    that brings it (the socket is open before the overview is read, so it is not missed)."""
    socket = await client.ws_connect("/ws")
    try:
        overview = await get_json(client, "/api/overview")
        check_shape(overview, "Overview")
        if overview["ledger"]["last_verify"] is not None:
            return dict(overview["ledger"]["last_verify"])
        while True:
            message = await socket.receive(timeout=20)
            assert message.type is WSMsgType.TEXT, message
            event = json.loads(message.data)
            if event["type"] == "health" and "last_verify" in event:
                return dict(event["last_verify"])
    finally:
        await socket.close()


def _tamper(path: Path) -> int:
    """Rewrite one trade's quantity in the log at ``path``; its index."""
    drop_append_only_triggers(sa.create_engine(f"sqlite:///{path}"))
    with sqlite3.connect(path) as conn:
        idx, data = conn.execute(
            "SELECT idx, data FROM log_entry WHERE kind = 'trade' ORDER BY idx LIMIT 1"
        ).fetchone()
        obj = json.loads(data)
        obj["quantity_wh"] += 1
        changed = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        conn.execute("UPDATE log_entry SET data = ? WHERE idx = ?", (changed, idx))
    return int(idx)


async def test_the_server_verifies_the_ledger_at_start_and_shows_it(
    sim: SimLedger, tmp_path: Path
) -> None:
    operator = sim.key("operator").verifying
    client = await _start(_settings(sim.copy(tmp_path / "good"), tmp_path, operator_key=operator))
    try:
        verified = await _verified(client)
    finally:
        await client.close()
    assert verified["ok"] is True and verified["problem"] is None
    assert verified["tree_size"] == sim.report["ledger_entries"]
    assert verified["kid"] == operator.kid  # the configured key, checked against
    assert verified["anchored"] is True
    assert isinstance(verified["at_s"], int)


async def test_a_ledger_whose_stored_key_is_not_the_configured_one_fails(
    sim: SimLedger, tmp_path: Path
) -> None:
    other = SigningKey.generate().verifying  # operator_key_file names another operator
    client = await _start(_settings(sim.copy(tmp_path / "other"), tmp_path, operator_key=other))
    try:
        verified = await _verified(client)
    finally:
        await client.close()
    assert verified["ok"] is False and verified["anchored"] is True
    assert verified["kid"] == other.kid
    stored = sim.key("operator").verifying.kid
    assert verified["problem"] == (
        f"the ledger's stored operator key {stored} is not the trusted key {other.kid}"
    )


async def test_a_tampered_ledger_fails_verification_on_the_page(
    sim: SimLedger, tmp_path: Path
) -> None:
    ledger = sim.copy(tmp_path / "bad")
    _tamper(ledger)
    client = await _start(_settings(ledger, tmp_path))  # the ledger's stored key
    try:
        verified = await _verified(client)
    finally:
        await client.close()
    assert verified["ok"] is False
    assert verified["problem"]
    assert verified["tree_size"] == sim.report["ledger_entries"]
    assert verified["kid"] == sim.key("operator").verifying.kid  # the stored one
    assert verified["anchored"] is False  # no operator_key_file: the page says so


async def test_never_with_zero_and_a_result_recorded_elsewhere_is_pushed(
    sim: SimLedger, tmp_path: Path
) -> None:
    """``verify_every_s = 0``: the server does not verify; a result another process
    records (``simulate`` at the end of its run) reaches the page as a health event."""
    settings = _settings(sim.path, tmp_path, verify_every_s=0, sync_every_s=0.05)
    client = await _start(settings)
    try:
        socket = await client.ws_connect("/ws")
        overview = await get_json(client, "/api/overview")
        assert overview["ledger"]["last_verify"] is None  # not verified by the server
        assert settings.read_model_url is not None
        other = ReadModel(settings.read_model_url)
        try:
            other.record_verify(ok=True, problem=None, tree_size=7, kid="k1", at_s=1_800_000_000)
        finally:
            other.close()
        while True:
            message = await socket.receive(timeout=20)
            event = json.loads(message.data)
            if event["type"] == "health" and "last_verify" in event:
                break
        await socket.close()
        expected = {
            "ok": True,
            "problem": None,
            "tree_size": 7,
            "kid": "k1",
            "at_s": 1_800_000_000,
            "anchored": True,
        }
        assert event["last_verify"] == expected
        overview = await get_json(client, "/api/overview")
        assert overview["ledger"]["last_verify"] == expected
    finally:
        await client.close()


def test_verify_every_s_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify_every_s must be 0"):
        _settings(tmp_path / "ledger.db", tmp_path, verify_every_s=-1)
