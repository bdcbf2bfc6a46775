"""MQTT over TLS with a client certificate and a password, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

import pytest

from tests.securebroker import make_ca, make_pki, password_file, secure_mosquitto
from wattmesh.broker.transport import BrokerAddress, TlsConfig, Transport, TransportConfig


def _config(port: int, tls: TlsConfig, *, password: str = "s3cret") -> TransportConfig:
    return TransportConfig(
        address=BrokerAddress("localhost", port),
        client_id="m1-h001",
        username="h001",
        password=password,
        tls=tls,
        operation_timeout_s=5,
    )


def _field(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


async def _connack(config: TransportConfig) -> int:
    """Connect over TLS by hand and return the MQTT 3.1.1 CONNACK return code.

    Raises ssl.SSLError / ConnectionError when TLS itself refuses.
    """
    assert config.tls is not None and config.username and config.password
    reader, writer = await asyncio.open_connection(
        config.address.host, config.address.port, ssl=config.tls.context()
    )
    try:
        body = _field("MQTT") + bytes([4, 0xC2, 0, 30])
        body += _field(config.client_id) + _field(config.username) + _field(config.password)
        writer.write(bytes([0x10, len(body)]) + body)
        await writer.drain()
        packet = await asyncio.wait_for(reader.readexactly(4), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    assert packet[0] == 0x20
    return packet[3]


async def test_tls_client_certificate_and_password(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    passwords = password_file(tmp_path / "passwd", {"h001": "s3cret"})
    tls = TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    async with secure_mosquitto(tmp_path, pki, passwords, require_certificate=True) as port:
        received: list[bytes] = []
        subscriber = Transport(_config(port, tls), subscriptions=[("t/#", 1)])
        async with subscriber:
            await asyncio.wait_for(subscriber.wait_connected(), 10)
            publisher_config = TransportConfig(
                address=BrokerAddress("localhost", port),
                client_id="m1-h001-pub",
                username="h001",
                password="s3cret",
                tls=tls,
            )
            async with Transport(publisher_config) as publisher:
                await publisher.publish("t/x", b"over tls", qos=1)

            async def first() -> None:
                async for message in subscriber.messages():
                    received.append(message.payload)
                    return

            await asyncio.wait_for(first(), 10)
        assert received == [b"over tls"]

        # Each missing or wrong piece is refused, by the broker or by TLS verification.
        assert await _connack(_config(port, tls)) == 0  # accepted
        assert await _connack(_config(port, tls, password="wrong")) == 5  # not authorised
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await _connack(_config(port, TlsConfig(ca_file=pki.ca)))  # no client certificate
        other_ca, _key, _cert = make_ca(tmp_path / "pki", "other-ca")
        wrong_ca = TlsConfig(ca_file=other_ca, cert_file=pki.client_cert, key_file=pki.client_key)
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connack(_config(port, wrong_ca))


def test_client_certificate_needs_both_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        TlsConfig(cert_file=tmp_path / "c.crt")


async def test_unreadable_tls_files_are_retried_not_fatal(tmp_path: Path) -> None:
    failures = asyncio.Event()
    seen: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "cannot set up TLS" in record.getMessage():
                seen.append(record.getMessage())
                if len(seen) >= 2:
                    failures.set()

    handler = Count()
    logger = logging.getLogger("wattmesh.broker.transport")
    logger.addHandler(handler)
    try:
        config = TransportConfig(
            address=BrokerAddress("localhost", 1),
            client_id="tls-missing",
            tls=TlsConfig(ca_file=tmp_path / "missing-ca.pem"),
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
        )
        async with Transport(config) as transport:
            await asyncio.wait_for(failures.wait(), 10)  # failed twice, still retrying
            assert not transport.connected
    finally:
        logger.removeHandler(handler)
    assert "missing-ca.pem" in seen[0] or "No such file" in seen[0]
