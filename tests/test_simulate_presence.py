"""``wattmesh simulate``: its agents stop as a real agent does, with the signed offline status.

A real Mosquitto and a listener on the status topics through the whole run: after the
closing round each household publishes its retained, signed ``offline`` (the same
message as its will) before the run clears the retained market state, so a dashboard
watching the run sees no agent online once it is over.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wattmesh.broker.messages import Presence, StatusBody, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Session, Transport, TransportConfig
from wattmesh.sim.simkeys import simulation_key
from wattmesh.sim.simulate import SimulationConfig, run_simulation

pytestmark = pytest.mark.slow

SEED = 5
HOUSEHOLDS = 3
WAIT_S = 10.0


async def test_the_simulated_agents_publish_their_signed_offline_status_on_a_clean_stop(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    topics = Topics("sim")
    listener = Transport(
        TransportConfig(address=mosquitto, client_id="status-listener", session=Session.CLEAN),
        subscriptions=[(topics.all_status, 1)],
    )
    config = SimulationConfig(
        households=HOUSEHOLDS,
        days=1,
        seed=SEED,
        forecaster="naive",
        history_days=7,
        workdir=tmp_path,
        gate_timeout_s=30.0,
        broker=mosquitto.url,
    )
    async with listener:
        await listener.wait_connected()
        report = await run_simulation(config)
        assert report["verified"] is True
        last: dict[str, Presence] = {}
        async with asyncio.timeout(WAIT_S):
            async for message in listener.messages():
                if not message.payload:  # the run clearing the retained statuses
                    continue
                signed = decode_message(message.payload)
                agent = signed.header.agent
                assert message.topic == topics.status(agent)
                signed.verify(simulation_key(SEED, agent).verifying)  # its own key
                body = signed.body
                assert isinstance(body, StatusBody)
                last[agent] = body.state
                if len(last) == HOUSEHOLDS and set(last.values()) == {Presence.OFFLINE}:
                    break
    assert sorted(last) == [f"h{i:03d}" for i in range(1, HOUSEHOLDS + 1)]
