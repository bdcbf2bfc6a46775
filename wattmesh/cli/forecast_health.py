"""``wattmesh forecast health --config forecast.toml [--timeout S]``: is the service up?

The forecaster container's health check (docker/compose.yaml); it serves no port, so
this reads what it tells everyone: its retained, signed ``health`` message on
``service/forecaster/health``. The probe connects with the service's own MQTT settings
(username, password, TLS; client id ``<client id>-health`` with a clean session, so it
never takes the service's connection over), checks the message is signed by the
forecaster's key from ``forecast.toml`` and for this market, and exits 0 if the state is
``ok`` or ``starting`` (connected and waiting for the ledger's next checkpoint: a fresh
market, or a restart with the log already read, stays there until an interval closes);
1 if it is ``degraded`` (reading the ledger's log fails) or ``stopped``, if the message
is missing, unsigned or foreign, or if the broker does not answer within the timeout. One line on
stdout says which. (A service killed outright leaves its last ``ok`` retained, but a
container whose process died is not running, so nothing is probed.)
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from wattmesh.broker.errors import MessageError
from wattmesh.broker.messages import HealthBody, decode_message
from wattmesh.broker.transport import Session, Transport
from wattmesh.config.forecast_config import ForecastServeConfig, load_forecast_config

__all__ = ["check_health", "run_health_command"]

HEALTHY = ("ok", "starting")


async def check_health(config: ForecastServeConfig, timeout_s: float) -> tuple[bool, str]:
    """(healthy, why) from the retained health message, within ``timeout_s``."""
    topic = config.topics.forecaster_health
    link = dataclasses.replace(
        config.transport,
        client_id=f"{config.transport.client_id}-health",
        session=Session.CLEAN,
        will=None,
        backoff_max_s=1.0,
    )
    transport = Transport(link, subscriptions=[(topic, 1)])
    async with transport:  # connects in the background
        try:
            async with asyncio.timeout(timeout_s):
                async for message in transport.messages():
                    if message.topic == topic:
                        return _judge(config, message.payload)
        except TimeoutError:
            seen = "connected, no health message" if transport.connected else "no connection"
            return False, f"nothing on {topic} within {timeout_s:g} s ({seen})"
    return False, "the connection closed"  # messages() ends only once the transport closed


def _judge(config: ForecastServeConfig, payload: bytes) -> tuple[bool, str]:
    if not payload:
        return False, "the health message was cleared"
    try:
        message = decode_message(payload)
        message.verify(config.forecaster_key.verifying)
    except MessageError as exc:
        return False, f"the health message does not check: {exc}"
    if message.header.market != config.market_id or not isinstance(message.body, HealthBody):
        return False, "the health message is not this market's forecaster health"
    state = message.body.state
    return state in HEALTHY, f"state {state} (started {message.body.started_s})"


def run_health_command(path: Path, timeout_s: float) -> int:
    """0 healthy, 1 not (one line on stdout); a bad ``path``: ConfigError (exit 2)."""
    config = load_forecast_config(path)
    healthy, why = asyncio.run(check_health(config, timeout_s))
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}")
    return 0 if healthy else 1
