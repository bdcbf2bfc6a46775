"""Running the real household agent: outbox on disk, signals, clean shutdown.

:func:`serve_household` is what ``wattmesh agent`` runs. On SIGTERM or SIGINT it
stops taking readings, commits what is staged in the outbox, gives the broker
``flush_timeout_s`` to acknowledge the backlog (what remains stays on disk and is
sent first after the next start), publishes the retained ``offline`` status and
disconnects cleanly. If the process dies instead, the broker publishes the same
``offline`` status as the MQTT last will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from wattmesh.agents._audit import CHECKPOINT_FILE, CheckpointFile
from wattmesh.agents._outbox import DEFAULT_CAPACITY, Outbox
from wattmesh.agents._publisher import (
    DEFAULT_COMMIT_INTERVAL_S,
    DEFAULT_MAX_IN_FLIGHT,
    DurablePublisher,
)
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.battery import BatteryController
from wattmesh.agents.meter import Meter
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.transport import TransportConfig

__all__ = ["OutboxSettings", "serve_household"]

_LOG = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite"
LEGACY_SEQUENCE_FILE = "sequence"  # agents.sequence.FileSequence, before the outbox
DEFAULT_FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class OutboxSettings:
    """The ``[outbox]`` section of agent.toml (see :func:`serve_household`).

    ``capacity``: live entries kept at most (entries; the oldest are dropped beyond);
    ``commit_interval_s``: at most one group commit (one fsync) per this many seconds;
    ``flush_timeout_s``: on shutdown, how long to wait for the broker's acknowledgements;
    ``max_in_flight``: messages published and not yet acknowledged at most (backfill
    sends this many per round trip).
    """

    capacity: int = DEFAULT_CAPACITY
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


class Companion(Protocol):
    """A service beside the agent that goes offline with it (the Home Assistant bridge)."""

    async def run(self) -> None: ...

    async def go_offline(self) -> None: ...


def open_agent_outbox(state_dir: Path, *, capacity: int = DEFAULT_CAPACITY) -> Outbox:
    """The outbox in ``state_dir``, continuing above a legacy sequence file if any."""
    state_dir.mkdir(parents=True, exist_ok=True)
    legacy = state_dir / LEGACY_SEQUENCE_FILE
    try:
        last = int(legacy.read_text(encoding="ascii").strip() or "0")
    except FileNotFoundError:
        last = 0
    return Outbox(state_dir / OUTBOX_FILE, capacity=capacity, min_last_seq=last)


async def serve_household(
    config: AgentConfig,
    transport_config: TransportConfig,
    *,
    key: SigningKey,
    meter: Meter,
    state_dir: Path,
    capacity: int = DEFAULT_CAPACITY,
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    companions: Sequence[Companion] = (),
    battery: BatteryController | None = None,
) -> None:
    """Run one household agent until the market closes or SIGTERM/SIGINT arrives.

    With a ``battery`` the agent orders with the battery strategy and commands it.

    ``companions`` run beside the agent (their connections already open) and publish
    their offline status, within ``flush_timeout_s``, before the agent does. The MQTT
    client's own in-flight limit is raised to ``max_in_flight`` if below it.
    """
    if transport_config.max_inflight < max_in_flight:
        transport_config = replace(transport_config, max_inflight=max_in_flight)
    outbox = open_agent_outbox(state_dir, capacity=capacity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    status = StatusSigner(key, config.topics, config.agent_id)  # signed online/offline
    try:
        async with (
            agent_transport(config, transport_config, status=status) as transport,
            DurablePublisher(
                outbox, transport, commit_interval_s=commit_interval_s, max_in_flight=max_in_flight
            ) as publisher,
        ):
            agent = HouseholdAgent(
                config,
                key=key,
                transport=transport,
                meter=meter,
                publisher=publisher,
                battery=battery,
                checkpoints=CheckpointFile(state_dir / CHECKPOINT_FILE),
            )
            run = asyncio.create_task(agent.run())
            stopper = asyncio.create_task(stop.wait())
            beside = [asyncio.create_task(c.run()) for c in companions]
            await asyncio.wait({run, stopper, *beside}, return_when=asyncio.FIRST_COMPLETED)
            for task in (run, stopper, *beside):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if not await publisher.flush(flush_timeout_s):
                _LOG.warning(
                    "%s: %d message(s) not acknowledged yet; kept in %s for the next start",
                    config.agent_id,
                    outbox.pending,
                    outbox.path,
                )
            for companion in companions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(companion.go_offline(), flush_timeout_s)
            await agent.go_offline(status, flush_timeout_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        outbox.close()
