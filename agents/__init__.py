"""The household agent: what runs on each home"s box (a Raspberry Pi or the like).

It reads the meter, signs readings and orders and publishes them, runs the battery,
audits the operator"s log with checkpoints and receipts, keeps a durable outbox and
bridges to Home Assistant. ``agents/metering/`` holds the real meters (P1, Modbus).
It imports ``broker`` only.

Other packages import only the modules named in ``__all__`` below, and from each
only the names in its own ``__all__`` (tests/test_public_surface.py checks it); every
other module and name is the package"s own.
"""

__all__ = [
    "agent",
    "battery",
    "battery_meter",
    "ha_bridge",
    "homeassistant",
    "lifecycle",
    "meter",
    "metering",
    "presence",
    "sequence",
]
