"""Real meters behind :class:`agents.meter.Meter`: DSMR/ESMR P1 ports and Modbus meters.

``spec`` parses meter specifications (``p1-tcp:host:port``, ``modbus-tcp:...``),
``open.open_meter`` turns one into a running meter. Everything returns integer Wh
registers, integer W power and UTC epoch seconds.
"""

__all__ = ["errors", "modbus_maps", "open", "p1", "spec"]  # the modules other packages may import
