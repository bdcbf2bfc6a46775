"""A neighbourhood from ``wattmesh provision`` on this machine: the generated files
with the broker's ports, the database and the state folders overridden, and the
generated Mosquitto (its ACL, passwords and TLS) as a local process."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from wattmesh.broker.mosquitto import MosquittoProcess, free_port
from wattmesh.broker.topics import Topics
from wattmesh.provision._configs import Endpoints
from wattmesh.provision.provision import Plan, Provisioned, local_broker_files, provision

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Neighbourhood:
    done: Provisioned
    plain_port: int
    tls_port: int

    @property
    def topics(self) -> Topics:
        return Topics(self.done.market_id)

    @property
    def root(self) -> Path:
        return self.done.layout.root

    def password(self, user: str) -> str:
        """A user's MQTT password, from the file its part reads."""
        layout = self.done.layout
        folder = {
            "ledger": layout.ledger,
            "forecaster": layout.forecasting,
            "dashboard": layout.dashboard,
        }.get(user, layout.household(user))
        return (folder / "mqtt_password").read_text(encoding="utf-8").strip()

    def tls_context(self, user: str | None, *, ca: Path | None = None) -> ssl.SSLContext:
        """A client context trusting the generated CA, with ``user``'s certificate."""
        layout = self.done.layout
        ctx = ssl.create_default_context(cafile=str(ca or layout.mosquitto / "ca.crt"))
        if user is not None:
            folder = layout.ledger if user == "ledger" else layout.household(user)
            ctx.load_cert_chain(str(folder / "client.crt"), str(folder / "client.key"))
        return ctx


def make_neighbourhood(
    out: Path,
    *,
    households: int,
    db_url: str = "sqlite:///unused.db",
    interval_s: int = 900,
    home_assistant: bool = False,
    tls: bool = False,
) -> Neighbourhood:
    plain, tls_port = free_port(), free_port()
    state = out.parent / f"{out.name}-state"

    def local(_password: str) -> Endpoints:
        return Endpoints(
            db_url=db_url,
            mqtt_host="127.0.0.1",
            mqtt_port=plain,
            mqtt_tls_port=tls_port,
            tls=tls,
            state_root=str(state),
            ledger_metrics_port=None,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
        )

    plan = Plan(
        households=households,
        market_id=f"p{uuid.uuid4().hex[:8]}",
        interval_s=interval_s,
        profile_days=2,
        home_assistant=home_assistant,
    )
    return Neighbourhood(provision(out, plan, endpoints=local), plain, tls_port)


@asynccontextmanager
async def generated_broker(hood: Neighbourhood, workdir: Path) -> AsyncIterator[MosquittoProcess]:
    """The generated Mosquitto (``log_type all``: every denial is in its log)."""
    conf = local_broker_files(
        hood.done.layout, plain_port=hood.plain_port, tls_port=hood.tls_port, data_dir=workdir
    )
    process = MosquittoProcess(workdir, port=hood.plain_port, config=conf)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


def client(
    hood: Neighbourhood,
    user: str | None,
    *,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> aiomqtt.Client:
    """An MQTT client logging in as ``user`` (its own password unless given)."""
    if user is not None and password is None:
        password = hood.password(user)
    return aiomqtt.Client(
        "127.0.0.1",
        hood.tls_port if tls is not None else hood.plain_port,
        username=user,
        password=password,
        identifier=f"{user}-{uuid.uuid4().hex[:6]}",
        tls_context=tls,
        timeout=10,
    )


class PartProcess:
    """``python -m wattmesh.cli ARGS...``, its output (stdout and stderr) read line by
    line as it comes; :meth:`until` waits for a line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> PartProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattmesh.cli",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._changed:
                self.lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def until(self, needle: str, timeout_s: float = 60.0) -> str:
        """The first line containing ``needle`` (AssertionError if the process ends)."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                found = next((line for line in self.lines if needle in line), None)
                if found is not None:
                    return found
                if self._reader.done():
                    raise AssertionError(f"ended without {needle!r}: {self.lines[-20:]}")
                await self._changed.wait()

    async def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM; the exit code once it has gone and its output is read."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout_s)
        await asyncio.wait_for(self._reader, timeout_s)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
