"""Zero-setup in-process MQTT 3.1.1 broker (amqtt, an optional extra: ``wattmesh[sim]``).

Runs on the caller's event loop, so it only serves clients while that loop runs.
amqtt 0.12 takes its settings as ``listeners`` plus a ``plugins`` mapping of
dotted class path to plugin options; anonymous access is the option
``allow_anonymous`` of ``amqtt.plugins.authentication.AnonymousAuthPlugin`` (the old
top-level ``auth: {allow-anonymous: ...}`` form is deprecated). Only that plugin is
loaded: no $SYS topics, no packet/event logging.

Known amqtt limits (measured): MQTT 5 refused; retained messages are delivered
ignoring topic ACLs; no offline QoS 1 queue for anonymous sessions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from wattmesh.broker.mosquitto import free_port
from wattmesh.broker.transport import BrokerAddress

__all__ = ["embedded_broker"]

_ANONYMOUS_PLUGIN: Final = "amqtt.plugins.authentication.AnonymousAuthPlugin"
# amqtt logs every connection and the ``transitions`` state machine it uses logs
# every state change at INFO.
_NOISY_LOGGERS: Final = ("amqtt", "transitions")


def _broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {_ANONYMOUS_PLUGIN: {"allow_anonymous": True}},
    }


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Raise amqtt's loggers to WARNING while the broker runs; restore afterwards."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


@contextlib.asynccontextmanager
async def embedded_broker(
    *, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[BrokerAddress]:
    """Run an anonymous amqtt broker on ``host:port`` (a free port if None).

    Raises ImportError naming the extra if amqtt is not installed.
    """
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        msg = "the embedded broker needs amqtt: pip install 'wattmesh[sim]'"
        raise ImportError(msg) from exc
    address = BrokerAddress(host, port if port is not None else free_port())
    with _quiet_logs():
        broker = Broker(_broker_config(address.host, address.port))
        await broker.start()
        try:
            yield address
        finally:
            await broker.shutdown()
