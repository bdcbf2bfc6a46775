"""SIGTERM: the agent flushes its outbox, publishes ``offline`` and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from wattmesh.agents._outbox import Outbox
from wattmesh.agents.lifecycle import OUTBOX_FILE, open_agent_outbox
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    Presence,
    StatusBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 10.0
STEP = 900

_CHILD = """
import asyncio, logging, sys, time
from pathlib import Path

from wattmesh.agents.agent import AgentConfig
from wattmesh.agents.lifecycle import serve_household
from wattmesh.agents.meter import SimulatedMeter, system_clock
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import TransportConfig, parse_broker_url

url, market, state_dir, start = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
logging.basicConfig(level=logging.WARNING)
meter = SimulatedMeter(
    start=start, interval_s=900, demand_wh=[100] * 8, pv_wh=[0] * 8, clock=system_clock
)
asyncio.run(
    serve_household(
        AgentConfig(
            agent_id="h001",
            topics=Topics(market),
            forecaster_key=SigningKey.generate().verifying,  # orders wait for a forecast
            diagnostics_interval_s=0,
        ),
        TransportConfig(address=parse_broker_url(url), client_id=f"{market}-h001"),
        key=SigningKey.generate(),
        meter=meter,
        state_dir=state_dir,
        commit_interval_s=3600,  # after the first commit, only the shutdown flush writes
    )
)
print("exited cleanly", flush=True)
"""


async def test_sigterm_flushes_the_outbox_and_publishes_offline(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    market = f"m{uuid.uuid4().hex[:8]}"
    topics = Topics(market)
    now = int(time.time())
    start = now - now % STEP - STEP
    operator = SigningKey.generate()
    watch = Transport(
        TransportConfig(address=mosquitto, client_id=f"watch-{market}"),
        subscriptions=[
            (topics.reading("h001"), 1),
            (topics.status("h001"), 1),
            (topics.diagnostics("h001"), 1),
        ],
    )
    async with watch, Transport(TransportConfig(address=mosquitto, client_id=f"op-{market}")) as op:
        await asyncio.wait_for(watch.wait_connected(), TIMEOUT_S)
        inbox = watch.messages()

        async def next_on(topic: str) -> Message:
            while True:
                message = await asyncio.wait_for(anext(inbox), TIMEOUT_S)
                if message.topic == topic:
                    return message

        async def announce(interval: int, seq: int) -> None:
            body = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
            wire = sign_message(
                operator,
                body,
                market=market,
                interval=interval,
                agent="operator",
                seq=seq,
                expires=interval + STEP,
            ).to_wire()
            await op.publish(topics.announce, wire, qos=1, retain=True)

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            mosquitto.url,
            market,
            str(tmp_path),
            str(start),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        try:
            online = decode_message((await next_on(topics.status("h001"))).payload)
            assert online.body_as(StatusBody) == StatusBody(Presence.ONLINE)
            await announce(start, 1)
            first = decode_message((await next_on(topics.reading("h001"))).payload)
            assert first.header.seq == 1  # the first commit happens at once
            await announce(start + STEP, 2)
            # The second reading is staged: the next commit is an hour away. (Whether
            # the first one's deletion is committed yet varies: pending is 1 or 2.)
            while True:
                report = json.loads((await next_on(topics.diagnostics("h001"))).payload)
                if report["outbox_last_seq"] == 2:
                    assert report["outbox_pending"] >= 1
                    break
            child.send_signal(signal.SIGTERM)
            second = decode_message((await next_on(topics.reading("h001"))).payload)
            assert (second.header.seq, second.header.interval) == (2, start + STEP)
            offline = decode_message((await next_on(topics.status("h001"))).payload)
            assert offline.body_as(StatusBody) == StatusBody(Presence.OFFLINE)
            assert offline.header.seq > online.header.seq + 1  # above the will's (N + 1)
            out, err = await asyncio.wait_for(child.communicate(), TIMEOUT_S)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert child.returncode == 0, err.decode()
        assert out == b"exited cleanly\n"
        await op.publish(topics.announce, b"", qos=1, retain=True)
    outbox = Outbox(tmp_path / OUTBOX_FILE)
    assert (outbox.pending, outbox.last_seq) == (0, 2)  # sent, deletions committed
    outbox.close()


def test_the_outbox_continues_above_the_legacy_sequence_file(tmp_path: Path) -> None:
    (tmp_path / "sequence").write_text("117\n", encoding="ascii")
    outbox = open_agent_outbox(tmp_path)
    assert outbox.add("t", lambda seq: b"x") == 118
    outbox.close()
    with pytest.raises(ValueError, match="capacity"):
        open_agent_outbox(tmp_path, capacity=0)
