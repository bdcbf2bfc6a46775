"""``wattmesh ledger run`` that dies in the crash window of one household's reading.

The ledger's ingest acknowledges a message when it reads it (PUBACK on receipt), admits
it, and then keeps it in the store's intake (:meth:`ledger.ledger.Ledger.flush_intake`).
Run this way, the process SIGKILLs itself just before keeping the first admitted
reading of ``AGENT``: the broker has forgotten that reading and the store never had it::

    python -m tests.flushkill AGENT ledger run --config ledger.toml

It writes one line on stderr (``flushkill: ...``) before the kill, so a test can wait
for it.
"""

from __future__ import annotations

import os
import signal
import sys

from wattmesh.broker.errors import MessageError
from wattmesh.broker.messages import ReadingBody, SignedMessage
from wattmesh.cli import main
from wattmesh.ledger._batch import PreparedBatch
from wattmesh.ledger.ledger import Ledger


def arm(agent: str) -> None:
    """Make every :class:`Ledger` of this process die before keeping ``agent``'s reading."""
    admit_batch, flush_intake = Ledger.admit_batch, Ledger.flush_intake
    holding: set[int] = set()  # ledgers (by id) that admitted it and have not kept it

    def admit(self: Ledger, batch: PreparedBatch) -> list[SignedMessage | MessageError]:
        results = admit_batch(self, batch)
        if any(
            isinstance(r, SignedMessage)
            and r.header.agent == agent
            and isinstance(r.body, ReadingBody)
            for r in results
        ):
            holding.add(id(self))
        return results

    def flush(self: Ledger) -> int:
        if id(self) in holding:
            os.write(2, f"flushkill: killed before keeping {agent}'s reading\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)
        return flush_intake(self)

    Ledger.admit_batch = admit  # type: ignore[method-assign]
    Ledger.flush_intake = flush  # type: ignore[method-assign]


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
