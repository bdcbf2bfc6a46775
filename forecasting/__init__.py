"""The forecasting service: forecasts of a household"s readings, published signed.

Pure forecast maths (``models``), the Prophet adapter and the MQTT service. It
imports ``broker`` only.

Other packages import only the modules named in ``__all__`` below, and from each
only the names in its own ``__all__`` (tests/test_public_surface.py checks it); every
other module and name is the package"s own.
"""

__all__ = ["history", "server", "service"]
