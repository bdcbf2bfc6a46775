"""``wattmesh forecast health``: the forecaster container's health check reads the
service's retained, signed health over a real Mosquitto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.forecastkit import write_forecast_config
from tests.ledgerrunkit import ROOT, Market, write_market
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import HealthBody, Signer
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.cli.forecast_health import check_health
from wattmesh.config.forecast_config import load_forecast_config
from wattmesh.forecasting.server import SERVICE_ID


def _files(tmp_path: Path, broker: BrokerAddress) -> tuple[Market, Path, SigningKey]:
    market = write_market(tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}", broker=broker)
    config, key = write_forecast_config(
        market, broker, ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}", interval_s=900
    )
    return market, config, key


async def _retain(broker: BrokerAddress, topic: str, payload: bytes) -> None:
    async with Transport(TransportConfig(address=broker, client_id="health-writer")) as link:
        await link.publish(topic, payload, qos=1, retain=True)


def _health(key: SigningKey, market: Market, state: str) -> bytes:
    now = int(time.time())
    body = HealthBody(state, now - 60, {}, None, None)
    signer = Signer(key, market.topics.market_id, SERVICE_ID)
    return signer.sign(body, interval=now - now % 900, seq=1, expires=0).to_wire()


async def test_ok_and_starting_are_healthy_degraded_and_stopped_not(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    market, path, key = _files(tmp_path, mosquitto)
    config = load_forecast_config(path)
    topic = market.topics.forecaster_health
    healthy, why = await check_health(config, timeout_s=1.0)
    assert not healthy and "nothing on" in why and "connected" in why
    for state, expected in (
        ("starting", True),
        ("ok", True),
        ("degraded", False),
        ("stopped", False),
    ):
        await _retain(mosquitto, topic, _health(key, market, state))
        healthy, why = await check_health(config, timeout_s=5.0)
        assert (healthy, why.split(" (")[0]) == (expected, f"state {state}")
    # another key's "ok" (someone else on the topic) does not count
    await _retain(mosquitto, topic, _health(SigningKey.generate(), market, "ok"))
    healthy, why = await check_health(config, timeout_s=5.0)
    assert not healthy and "does not check" in why
    await _retain(mosquitto, topic, b"")  # cleared: as if never published
    healthy, _ = await check_health(config, timeout_s=1.0)
    assert not healthy


async def test_the_command_exits_0_when_healthy_and_1_when_not(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    market, path, key = _files(tmp_path, mosquitto)
    command = [sys.executable, "-m", "wattmesh.cli", "forecast", "health", "--config", str(path)]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *extra], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
        )

    await _retain(mosquitto, market.topics.forecaster_health, _health(key, market, "stopped"))
    stopped = await asyncio.to_thread(run)
    assert (stopped.returncode, stopped.stdout.split(" (")[0]) == (1, "unhealthy: state stopped")
    await _retain(mosquitto, market.topics.forecaster_health, _health(key, market, "ok"))
    ok = await asyncio.to_thread(run)
    assert (ok.returncode, ok.stdout.split(" (")[0]) == (0, "healthy: state ok"), ok.stderr


def test_a_broker_that_does_not_answer_is_unhealthy(tmp_path: Path) -> None:
    import socket

    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    market, path, _ = _files(tmp_path, BrokerAddress("127.0.0.1", port))
    started = time.monotonic()
    healthy, why = asyncio.run(check_health(load_forecast_config(path), timeout_s=1.0))
    assert not healthy and "no connection" in why
    assert time.monotonic() - started < 5
    assert market.topics.forecaster_health in why


@pytest.mark.parametrize("missing", ["forecast.toml"])
def test_a_missing_config_is_a_usage_error(tmp_path: Path, missing: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "forecast", "health", "--config",
         str(tmp_path / missing)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
