"""``wattmesh agent`` as a real process: P1 over TCP, Home Assistant discovery, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.p1kit import telegram
from tests.test_p1_sources import p1_dongle
from wattmesh.broker.keys import write_key_pair
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    Presence,
    ReadingBody,
    StatusBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

ROOT = Path(__file__).resolve().parents[1]
TOPICS = Topics("runm")


def _status(seen: list[Message], household: str) -> Presence:
    """The state of the last signed status seen on the household's status topic."""
    payload = [m.payload for m in seen if m.topic == f"{household}/status"][-1]
    return decode_message(payload).body_as(StatusBody).state


async def _until(
    transport: Transport, seen: list[Message], want: set[tuple[str, bytes | None]]
) -> None:
    """Collect messages until every (topic, payload-or-None) in ``want`` was seen."""

    def satisfied() -> bool:
        return all(
            any(m.topic == t and (p is None or m.payload == p) for m in seen) for t, p in want
        )

    async def consume() -> None:
        if satisfied():
            return
        async for message in transport.messages():
            seen.append(message)
            if satisfied():
                return

    await asyncio.wait_for(consume(), 30)


async def test_agent_process_reads_p1_publishes_and_goes_offline(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    operator = write_key_pair(tmp_path / "operator")
    write_key_pair(tmp_path / "keys")

    async def dongle(writer: asyncio.StreamWriter) -> None:
        while True:  # a DSMR 5 meter: one telegram per interval, whether read or not
            writer.write(telegram(stamp="261201143015W", power_used="00.750"))
            await writer.drain()
            await asyncio.sleep(0.2)

    async with p1_dongle(dongle) as p1_port:
        config = tmp_path / "agent.toml"
        config.write_text(
            f'agent_id = "h001"\nmarket_id = "{TOPICS.market_id}"\n'
            f'broker = "mqtt://{mosquitto.host}:{mosquitto.port}"\n'
            'key_file = "keys/private_key.pem"\nstate_dir = "state"\n'
            'operator_key_file = "operator/public_key.pem"\n'
            f'[meter]\nkind = "p1-tcp"\nhost = "127.0.0.1"\nport = {p1_port}\n'
            '[homeassistant]\nenabled = true\nprefix = "hatest"\nstate_interval_s = 1\n',
            encoding="utf-8",
        )
        household = TOPICS.household("h001")
        viewer = Transport(
            TransportConfig(address=mosquitto, client_id="run-viewer"),
            subscriptions=[(f"{household}/#", 1), ("hatest/#", 1)],
        )
        async with viewer:
            await asyncio.wait_for(viewer.wait_connected(), 10)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wattmesh.cli",
                "agent",
                "--config",
                str(config),
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            seen: list[Message] = []
            try:
                power_config = "hatest/sensor/wattmesh_runm_h001/power/config"
                await _until(
                    viewer,
                    seen,
                    {
                        (f"{household}/status", None),
                        (power_config, None),
                        (f"{household}/ha/meter", None),
                    },
                )
                assert _status(seen, household) is Presence.ONLINE  # signed
                state = json.loads(next(m.payload for m in seen if m.topic.endswith("/ha/meter")))
                assert state["import_wh"] == 22_222_221 and state["power_w"] == 750

                t = 1_764_600_000
                body = AnnouncementBody(Phase.OPEN, 900, 300_000, 80_000)
                wire = sign_message(
                    operator,
                    body,
                    market=TOPICS.market_id,
                    interval=t,
                    agent="operator",
                    seq=1,
                    expires=t + 900,
                ).to_wire()
                async with Transport(TransportConfig(address=mosquitto, client_id="run-op")) as op:
                    await op.publish(TOPICS.announce, wire, qos=1)
                await _until(viewer, seen, {(f"{household}/reading", None)})
                reading = decode_message(
                    next(m.payload for m in seen if m.topic.endswith("/reading"))
                )
                assert isinstance(reading.body, ReadingBody)
                assert (reading.body.import_wh, reading.body.export_wh) == (22_222_221, 3_580_245)
                assert reading.body.power_w == 750

                process.send_signal(signal.SIGTERM)
                closing: list[Message] = []
                await _until(
                    viewer,
                    closing,
                    {
                        (f"{household}/status", None),
                        (f"{household}/ha/availability", b"offline"),
                    },
                )
                assert _status(closing, household) is Presence.OFFLINE
                assert await asyncio.wait_for(process.wait(), 20) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                stderr = await process.stderr.read() if process.stderr else b""
            assert b"Traceback" not in stderr, stderr.decode()
            async with Transport(
                TransportConfig(address=mosquitto, client_id="run-clean")
            ) as clean:
                for topic in {m.topic for m in seen if m.retain} | {
                    m.topic for m in seen if "config" in m.topic
                }:
                    await clean.publish(topic, b"", qos=1, retain=True)
