"""The forecasting service: forecasts of a household"s readings, published signed.

The models by name with their quantile forecasts and the choice among them (``models``),
rolling-origin backtests on measured data (``backtesting``), weather inputs (``weather``)
and the MQTT service. It imports ``broker`` only (numpy, pandas, prophet, pvlib and
statsforecast lazily).

Other packages import only the modules named in ``__all__`` below, and from each
only the names in its own ``__all__`` (tests/test_public_surface.py checks it); every
other module and name is the package"s own.
"""

__all__ = ["anomaly", "backtesting", "history", "models", "server", "service", "weather"]
