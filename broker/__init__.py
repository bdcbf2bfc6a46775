"""The wire contract and the MQTT transport, not an MQTT broker.

What every other package shares: the topic tree, the message bodies and their strict
schemas, canonical bytes, keys and signatures, the error tree's root, and the
connections to a broker (the reconnecting transport, the ledger's receive-only
subscriber, a private Mosquitto and the embedded broker for simulations). The broker
itself is Mosquitto. docs/protocol.md is the contract; docs/ARCHITECTURE.md the map.

Other packages import only the modules named in ``__all__`` below, and from each
only the names in its own ``__all__`` (tests/test_public_surface.py checks it); every
other module and name is the package's own.
"""

__all__ = [
    "acl",
    "audit_bodies",
    "bodies",
    "canonical",
    "connection",
    "embedded",
    "errors",
    "forecast_bodies",
    "keys",
    "messages",
    "mosquitto",
    "mosquitto_passwd",
    "subscriber",
    "tlog",
    "tlog_json",
    "topics",
    "transport",
]
