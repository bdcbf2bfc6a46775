"""Market mechanisms: pure functions from an order book and the grid's tariff to fills.

One module per concern: :mod:`.base` (rules, results, limits), :mod:`.matching`
(merit order), :mod:`.auctions` (uniform, pay-as-bid), :mod:`.community` (SDR, MMR),
:mod:`.line_items` (money line items), :mod:`.tariffs` (time-of-use schedules),
:mod:`.catalog` (mechanisms by name).
"""

__all__ = ["base", "catalog", "line_items", "tariffs"]  # the modules other packages may import
