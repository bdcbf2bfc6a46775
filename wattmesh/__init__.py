"""wattmesh: peer-to-peer energy trading for residential microgrids.

The composition root (``cli``, ``config``, ``sim``) and, as ``wattmesh.agents``,
``wattmesh.broker``, ``wattmesh.forecasting`` and ``wattmesh.ledger``, the four packages
it composes (docs/ARCHITECTURE.md).
"""
