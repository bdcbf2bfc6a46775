"""A private Mosquitto for a benchmark (its own config, port and log in ``workdir``), and
the raw-socket MQTT 3.1.1 client the publishing processes use (they stand for many
household devices, so they must cost the shared cores as little as possible)."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from wattmesh.broker._mqtt_packets import (
    FrameReader,
    connect_packet,
    publish_packet,
    subscribe_packet,
)
from wattmesh.broker.mosquitto import find_mosquitto, free_port


@contextlib.contextmanager
def run_mosquitto(workdir: Path, settings: str) -> Iterator[tuple[int, int]]:
    """Mosquitto on a free loopback port with ``settings`` (config lines) beside the
    listener, user and log file; yields its port and process id once it accepts."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n{settings}"
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"log_dest file {workdir / 'mosquitto.log'}\n"
    )
    exe = find_mosquitto()
    assert exe is not None, "mosquitto not found"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait for the port to accept (a condition with a timeout)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


class RawClient:
    """A clean-session MQTT connection on a raw socket, subscribed to one topic (QoS 0)."""

    def __init__(self, port: int, client_id: str, topic: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames = FrameReader()
        self.pending: list[tuple[int, bytes]] = []
        self.sock.sendall(connect_packet(client_id, keepalive_s=60, clean_session=True))
        assert self.read_packet() == 0x20
        self.sock.sendall(subscribe_packet(1, [(topic, 0)]))
        assert self.read_packet() == 0x90

    def read(self) -> tuple[int, bytes]:
        """The next MQTT packet from the socket: its first byte and the rest."""
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.pending += self.frames.feed(chunk)
        return self.pending.pop(0)

    def read_packet(self) -> int:
        """The first byte of the next MQTT packet from the socket."""
        return self.read()[0]


def publish_packets(items: Sequence[tuple[str, bytes]]) -> bytes:
    """QoS 1 PUBLISH packets of ``(topic, payload)``, encoded in advance."""
    return b"".join(
        publish_packet(topic, payload, qos=1, packet_id=i % 65_535 + 1, retain=False)
        for i, (topic, payload) in enumerate(items)
    )
