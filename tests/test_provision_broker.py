"""The generated broker (issue 15): Mosquitto run from ``wattmesh provision``'s
``mosquitto/`` folder (its passwd, acl and certificates; only the ports and the data
folder replaced) keeps each household to its own topics.

Mosquitto acknowledges a QoS 1 publish its ACL denies, so a denial is shown at a
subscriber allowed to read the topic: an allowed client publishes a sentinel after the
denied message, on the same subscription, and the subscriber reads until the sentinel;
the denied message would have come first. No sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio

from tests.provisionkit import Neighbourhood, client, generated_broker, make_neighbourhood
from wattmesh.broker._mqtt_packets import connect_packet
from wattmesh.broker.mosquitto import MosquittoProcess
from wattmesh.provision._certs import client_cert, new_ca

TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def hood(tmp_path_factory: pytest.TempPathFactory) -> Neighbourhood:
    return make_neighbourhood(tmp_path_factory.mktemp("prov") / "hood", households=2)


@pytest_asyncio.fixture
async def broker(hood: Neighbourhood, tmp_path: Path) -> AsyncIterator[MosquittoProcess]:
    async with generated_broker(hood, tmp_path / "mosquitto") as process:
        yield process


async def _until_sentinel(
    subscriber: aiomqtt.Client, sentinel: bytes, ready: asyncio.Event | None = None
) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for message in subscriber.messages:
            payload = bytes(message.payload)  # type: ignore[arg-type]
            got.append((str(message.topic), payload))
            if payload == sentinel:
                return got
    raise AssertionError("unreachable")


async def test_a_household_cannot_publish_as_another(
    hood: Neighbourhood, broker: MosquittoProcess
) -> None:
    t = hood.topics
    async with (
        client(hood, "ledger") as ledger,
        client(hood, "h001") as h001,
        client(hood, "h002") as h002,
    ):
        await ledger.subscribe(t.all_readings, qos=1)
        await ledger.subscribe(t.all_orders, qos=1)
        # Acknowledged (QoS 1) although the ACL drops them.
        await h001.publish(t.reading("h002"), b"forged reading", qos=1)
        await h001.publish(t.order("h002"), b"forged order", qos=1)
        await h001.publish(t.reading("h001"), b"own reading", qos=1)
        await h002.publish(t.order("h002"), b"sentinel", qos=1)
        got = await _until_sentinel(ledger, b"sentinel")
    assert got == [(t.reading("h001"), b"own reading"), (t.order("h002"), b"sentinel")]
    log = broker.log_path.read_text(encoding="utf-8")
    assert "Denied PUBLISH from h001" in log and t.reading("h002") in log


async def test_a_household_cannot_read_another_households_private_topics(
    hood: Neighbourhood, broker: MosquittoProcess
) -> None:
    t = hood.topics
    async with client(hood, "forecaster") as forecaster, client(hood, "h001") as h001:
        for topic in (t.forecast("h002"), f"{t.root}/household/+/forecast", t.forecast("h001")):
            await h001.subscribe(topic, qos=1)
        for private in (t.forecast, t.error, t.receipt, t.checkpoint_reply, t.reading):
            await h001.subscribe(private("h002"), qos=1)
        await forecaster.publish(t.forecast("h002"), b"h002's forecast", qos=1)
        await forecaster.publish(t.forecast("h001"), b"sentinel", qos=1)
        got = await _until_sentinel(h001, b"sentinel")
    assert got == [(t.forecast("h001"), b"sentinel")]


async def test_an_anonymous_client_and_a_wrong_password_are_refused(
    hood: Neighbourhood, broker: MosquittoProcess
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with client(hood, None):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with client(hood, "h001", password=hood.password("h002")):
            pass
    async with client(hood, "h001"):  # the generated password hash is Mosquitto's
        pass


async def test_tls_with_the_generated_ca_and_a_client_certificate(
    hood: Neighbourhood, broker: MosquittoProcess
) -> None:
    t = hood.topics
    async with (
        client(hood, "ledger", tls=hood.tls_context("ledger")) as ledger,
        client(hood, "h001", tls=hood.tls_context("h001")) as h001,
    ):
        await ledger.subscribe(t.all_readings, qos=1)
        await h001.publish(t.reading("h001"), b"over tls", qos=1)
        got = await _until_sentinel(ledger, b"over tls")
    assert got == [(t.reading("h001"), b"over tls")]


async def _tls_connack(hood: Neighbourhood, ctx: ssl.SSLContext, user: str) -> bytes:
    """What the TLS listener answers a CONNECT with: a CONNACK's 4 bytes, or what came
    before the connection ended (b"" when refused during or right after the handshake)."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", hood.tls_port, ssl=ctx)
            try:
                packet = connect_packet(
                    f"{user}-raw",
                    keepalive_s=30,
                    clean_session=True,
                    username=user,
                    password=hood.password(user),
                )
                writer.write(packet)
                await writer.drain()
                return await reader.read(4)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except (ssl.SSLError, ConnectionError):
        return b""


CONNACK_ACCEPTED = bytes((0x20, 2, 0, 0))


def _from_another_ca(hood: Neighbourhood, folder: Path) -> ssl.SSLContext:
    """Trusts the generated CA, but shows a certificate for h001 from another CA."""
    now = dt.datetime.now(dt.UTC)
    stranger = client_cert(new_ca("another CA", now=now), "h001", now=now)
    cert, key = folder / "c.crt", folder / "c.key"
    cert.write_bytes(stranger.cert_pem)
    key.write_bytes(stranger.key_pem)
    ctx = hood.tls_context(None)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_tls_refuses_a_client_without_a_certificate_or_from_another_ca(
    hood: Neighbourhood, broker: MosquittoProcess, tmp_path: Path
) -> None:
    other_ca = _from_another_ca(hood, tmp_path)
    assert await _tls_connack(hood, hood.tls_context("h001"), "h001") == CONNACK_ACCEPTED
    assert await _tls_connack(hood, hood.tls_context(None), "h001") == b""
    assert await _tls_connack(hood, other_ca, "h001") == b""
