"""A private Mosquitto broker process for tests and ``wattmesh simulate --broker auto``.

The broker listens on 127.0.0.1 only, allows anonymous clients, refuses a payload
above the contract's limit (``message_size_limit``), keeps nothing on
disk (persistence off, unless :attr:`Persistence.ON` is chosen) and logs to
``mosquitto.log`` in its working directory.
When run as root, Mosquitto 2 would drop privileges to the ``mosquitto`` user and
then fail to open a log file in a root-owned directory; the config therefore names
the current user, so the broker runs with the caller's identity.

Times are in seconds (``_s`` suffix).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from typing import Final

from wattmesh.broker.errors import BrokerError, FailureError
from wattmesh.broker.messages import MAX_MESSAGE_BYTES
from wattmesh.broker.transport import BrokerAddress, parse_broker_url

__all__ = [
    "MAX_QUEUED_MESSAGES",
    "BrokerAddress",
    "MosquittoNotFoundError",
    "MosquittoProcess",
    "Persistence",
    "find_mosquitto",
    "free_port",
    "parse_broker_url",
    "private_mosquitto",
]

_HOST: Final = "127.0.0.1"
_FALLBACK_PATH: Final = Path("/usr/sbin/mosquitto")
_POLL_INTERVAL_S: Final = 0.02
_NOT_FOUND: Final = "mosquitto not found: apt-get install mosquitto"


class MosquittoNotFoundError(BrokerError, FailureError, FileNotFoundError):
    """No ``mosquitto`` executable on PATH or at /usr/sbin/mosquitto."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable: PATH first, then /usr/sbin/mosquitto."""
    on_path = shutil.which("mosquitto")
    if on_path is not None:
        return on_path
    if _FALLBACK_PATH.is_file() and os.access(_FALLBACK_PATH, os.X_OK):
        return str(_FALLBACK_PATH)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_port_free(port: int) -> None:
    """Raise RuntimeError if something already listens on ``port``.

    Uses SO_REUSEADDR like Mosquitto, so connections of a previous (killed) broker
    lingering in TIME_WAIT do not count. Without this check the readiness poll could
    mistake another listener for our broker.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError as exc:
            msg = f"port {port} on {_HOST} is already in use: {exc}"
            raise RuntimeError(msg) from exc


class Persistence(Enum):
    """``OFF``: nothing on disk. ``ON``: sessions, subscriptions, retained and queued
    messages saved to ``mosquitto.db`` in the workdir after every change
    (``autosave_on_changes``), so they survive a restart, even after SIGKILL up to
    the last save."""

    OFF = "off"
    ON = "on"


MAX_QUEUED_MESSAGES = 1_000_000


def _config_text(
    port: int, log_path: Path, persistence: Persistence, message_size_limit_bytes: int
) -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    stored: tuple[str, ...]
    if persistence is Persistence.ON:
        stored = (
            "persistence true",
            f"persistence_location {log_path.parent}/",
            "autosave_on_changes true",
            "autosave_interval 1",
        )
    else:
        stored = ("persistence false",)
    return "\n".join(
        (
            f"listener {port} {_HOST}",
            "allow_anonymous true",
            *stored,
            "set_tcp_nodelay true",
            # A payload above the contract's limit is refused by the broker (a QoS 1
            # publish is still acknowledged to its sender), so it never reaches a
            # subscriber; 0 is Mosquitto's default: no limit.
            f"message_size_limit {message_size_limit_bytes}",
            # What docs/protocol.md ("Delivery") asks of the ledger's broker: a queue per
            # client above the largest burst (the default 1,000 drops QoS 0 and 1
            # messages to a receiver that falls behind, silently; 0, unlimited, dropped
            # everything in some 2.0.x releases).
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"log_dest file {log_path}",
            f"user {user}",
            "",
        )
    )


def _open_append(path: Path) -> int:
    """File descriptor for appending ``path`` (for the child's stderr)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def _port_accepts(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection(_HOST, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class MosquittoProcess:
    """One Mosquitto process on a fixed port; can be stopped, killed and restarted.

    ``workdir`` receives ``mosquitto.conf``, ``mosquitto.log`` and
    ``mosquitto.stderr``. ``message_size_limit_bytes`` is Mosquitto's payload limit
    (default the contract's :data:`broker.messages.MAX_MESSAGE_BYTES`; 0: none). The
    port is chosen once (``free_port()`` if not given) and kept across restarts so
    clients can reconnect to the same address. ``config``: a whole ``mosquitto.conf``
    to run instead of the generated one (``wattmesh provision``'s, with a listener on
    ``port`` and its log in ``workdir/mosquitto.log``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        executable: str | None = None,
        persistence: Persistence = Persistence.OFF,
        message_size_limit_bytes: int = MAX_MESSAGE_BYTES,
        config: str | None = None,
    ) -> None:
        found = executable if executable is not None else find_mosquitto()
        if found is None:
            raise MosquittoNotFoundError(_NOT_FOUND)
        self._executable = found
        self._workdir = workdir
        self._port = port if port is not None else free_port()
        self._persistence = persistence
        self._message_size_limit_bytes = message_size_limit_bytes
        self._config = config
        self._process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> BrokerAddress:
        """Where clients connect."""
        return BrokerAddress(_HOST, self._port)

    @property
    def log_path(self) -> Path:
        """Mosquitto's own log file."""
        return self._workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        """True between a successful start and the next stop/kill."""
        return self._process is not None and self._process.returncode is None

    async def start(self, *, ready_timeout_s: float = 10.0) -> None:
        """Start the broker and return once its port accepts TCP connections.

        Raises RuntimeError if the port is taken, or (with the log tail) if the
        broker exits or is not ready in time.
        """
        if self._process is not None:
            msg = "mosquitto is already running; stop() or kill() it first"
            raise RuntimeError(msg)
        _ensure_port_free(self._port)
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_path = self._workdir / "mosquitto.conf"
        text = self._config or _config_text(
            self._port, self.log_path, self._persistence, self._message_size_limit_bytes
        )
        config_path.write_text(text, encoding="utf-8")
        stderr_fd = _open_append(self._workdir / "mosquitto.stderr")
        try:
            process = await asyncio.create_subprocess_exec(
                self._executable,
                "-c",
                str(config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr_fd,
            )
        finally:
            os.close(stderr_fd)
        self._process = process
        try:
            await self._wait_ready(process, ready_timeout_s)
        except BaseException:
            await self._terminate(grace_s=1.0)
            raise

    async def _wait_ready(self, process: asyncio.subprocess.Process, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.returncode is not None:
                msg = f"mosquitto exited with {process.returncode}: {self._diagnostics()}"
                raise RuntimeError(msg)
            if await _port_accepts(self._port) and process.returncode is None:
                return
            if time.monotonic() >= deadline:
                msg = f"mosquitto not accepting on port {self._port} after {timeout_s} s: "
                raise RuntimeError(msg + self._diagnostics())
            await asyncio.sleep(_POLL_INTERVAL_S)  # readiness poll, bounded by the deadline

    def _diagnostics(self) -> str:
        tails = []
        for name in ("mosquitto.log", "mosquitto.stderr"):
            path = self._workdir / name
            if path.exists():
                tails.append(path.read_text(encoding="utf-8", errors="replace")[-2000:])
        return " | ".join(tail.strip() for tail in tails if tail.strip()) or "(no output)"

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if still alive after ``grace_s``; reaps the process."""
        await self._terminate(grace_s=grace_s)

    async def kill(self) -> None:
        """SIGKILL (no clean shutdown) and reap; a no-op if not running."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
        self._process = None

    async def restart(self, *, ready_timeout_s: float = 10.0) -> None:
        """Stop (if running) and start again on the same port."""
        await self.stop()
        await self.start(ready_timeout_s=ready_timeout_s)

    async def _terminate(self, *, grace_s: float) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=grace_s)
            except TimeoutError:
                process.send_signal(signal.SIGKILL)
        await process.wait()
        self._process = None


@contextlib.asynccontextmanager
async def private_mosquitto(
    workdir: Path, *, port: int | None = None
) -> AsyncIterator[BrokerAddress]:
    """Run a private Mosquitto in ``workdir`` for the duration of the block."""
    process = MosquittoProcess(workdir, port=port)
    await process.start()
    try:
        yield process.address
    finally:
        await process.stop()
