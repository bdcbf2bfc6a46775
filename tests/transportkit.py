"""Helpers for the MQTT transport tests: a fast-reconnecting configuration, unique
topic prefixes, and waits bounded by ``TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 10.0


def quick_config(address: BrokerAddress, client_id: str) -> TransportConfig:
    return TransportConfig(
        address=address, client_id=client_id, backoff_initial_s=0.05, backoff_max_s=0.5
    )


def unique_prefix() -> str:
    """A topic prefix unique to this test (the session Mosquitto keeps retained state)."""
    return f"wmtest/{uuid.uuid4().hex[:12]}"


async def next_message(inbox: AsyncIterator[Message]) -> Message:
    return await asyncio.wait_for(anext(inbox), TIMEOUT_S)


async def until_connected(*transports: Transport) -> None:
    for transport in transports:
        await asyncio.wait_for(transport.wait_connected(), TIMEOUT_S)
