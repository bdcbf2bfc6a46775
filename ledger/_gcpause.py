"""Pause Python's cyclic garbage collector around allocation-heavy batch work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; restore its previous state after.

    Reference counting still frees everything acyclic at once; cycles made meanwhile
    wait for the next collection. Worth it where a batch allocates many objects while
    a large heap is alive: each full collection walks the whole heap.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
