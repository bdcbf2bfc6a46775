"""Double-entry postings: every movement of money is a balanced set of account lines.

Pure functions over small frozen values. Sign convention: a line's ``amount_micro`` is
positive for a debit (the account's holder pays, its bill grows) and negative for a
credit (the holder receives). Every posting's lines sum to zero, so the sum over all
accounts is zero after any sequence of postings.

Accounts:

- ``household/<agent>``: one per household; its balance is what it owes (positive) or
  is owed (negative).
- ``grid``: the utility that sells at retail and buys at the feed-in tariff.
- ``operator/market``: the operator as the central counterparty of P2P trades. Buyers
  pay it and it pays sellers; over an interval in which every party was settled it
  nets to zero. A household whose settlement was flagged leaves its share open here.
- ``operator/fees``: the operator's network fees on P2P trades. A fill's price is what
  the buyer pays; the market account pays the seller that same gross amount, and the
  seller pays the fee of its sales (``Settlement.network_fee_micro``) to this account,
  so it nets the clearing's ``cost(q, p - f)`` (docs/protocol.md, "Network fee").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.ledger.settlement import Basis, Settlement

__all__ = [
    "FEES_ACCOUNT",
    "GRID_ACCOUNT",
    "MARKET_ACCOUNT",
    "Cause",
    "Posting",
    "balances",
    "household_account",
]

GRID_ACCOUNT = "grid"
MARKET_ACCOUNT = "operator/market"
FEES_ACCOUNT = "operator/fees"
HOUSEHOLD_PREFIX = "household/"


def household_account(agent: str) -> str:
    return HOUSEHOLD_PREFIX + agent


class Cause(StrEnum):
    """Why money moved. The values are part of the log format."""

    P2P_TRADE = "p2p_trade"
    GRID_PURCHASE = "grid_purchase"
    GRID_SALE = "grid_sale"
    NETWORK_FEE = "network_fee"
    ESTIMATE = "estimate"  # the grid part of a settlement made on estimated energy
    CORRECTION = "correction"  # a later revision of an estimate: the difference only


class UnbalancedPosting(LedgerError, FailureError, ValueError):
    """A posting whose lines do not sum to zero (a bug, never a rounding matter)."""


@dataclass(frozen=True)
class Line:
    account: str
    amount_micro: int  # + debit (pays), - credit (receives)


@dataclass(frozen=True)
class Posting:
    """A balanced set of lines with its reference: interval, household and cause."""

    interval: int
    agent: str
    cause: Cause
    lines: tuple[Line, ...]

    def __post_init__(self) -> None:
        if len(self.lines) < 2:
            raise UnbalancedPosting("a posting needs at least two lines")
        total = sum(line.amount_micro for line in self.lines)
        if total != 0:
            raise UnbalancedPosting(f"posting lines sum to {total}, not 0")

    def amount_for(self, account: str) -> int:
        return sum(line.amount_micro for line in self.lines if line.account == account)

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "agent": self.agent,
            "cause": self.cause.value,
            "lines": [
                {"account": line.account, "amount_micro": line.amount_micro} for line in self.lines
            ],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Posting:
        """Parse a logged posting; raise ValueError (or UnbalancedPosting) when malformed."""
        try:
            lines = tuple(Line(str(x["account"]), _int(x["amount_micro"])) for x in obj["lines"])
            return cls(_int(obj["interval"]), str(obj["agent"]), Cause(obj["cause"]), lines)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed posting: {exc}") from exc


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _transfer(
    s: Settlement, cause: Cause, *, payer: str, payee: str, amount_micro: int
) -> list[Posting]:
    """``payer`` pays ``payee`` ``amount_micro`` (negative: the other way); none if 0."""
    if amount_micro == 0:
        return []
    lines = (Line(payer, amount_micro), Line(payee, -amount_micro))
    return [Posting(s.interval, s.agent, cause, lines)]


def settlement_postings(settlement: Settlement, *, basis: Basis = Basis.METERED) -> list[Posting]:
    """The postings of one household's settlement for one interval.

    P2P money goes between the household and the market account; the grid deviation
    between the household and the grid (cause ``estimate`` when the energy was
    estimated); the network fee of a seller's sales from the household to the fee
    account. Zero amounts give no posting. The household's lines sum to
    ``settlement.cost_micro``.
    """
    s = settlement
    home = household_account(s.agent)
    postings = _transfer(
        s, Cause.P2P_TRADE, payer=home, payee=MARKET_ACCOUNT, amount_micro=s.p2p_cost_micro
    )
    if basis is Basis.ESTIMATED:
        cause = Cause.ESTIMATE
    else:
        cause = Cause.GRID_SALE if s.grid_sell_wh > 0 else Cause.GRID_PURCHASE
    postings += _transfer(s, cause, payer=home, payee=GRID_ACCOUNT, amount_micro=s.grid_cost_micro)
    postings += _transfer(
        s, Cause.NETWORK_FEE, payer=home, payee=FEES_ACCOUNT, amount_micro=s.network_fee_micro
    )
    return postings


def correction_postings(before: Settlement, after: Settlement) -> list[Posting]:
    """The difference between two revisions of one settlement (never a replacement)."""
    if (before.agent, before.interval) != (after.agent, after.interval):
        raise ValueError("a correction revises one household's settlement of one interval")
    if (after.p2p_cost_micro, after.network_fee_micro) != (
        before.p2p_cost_micro,
        before.network_fee_micro,
    ):
        raise ValueError("a correction revises metered energy; the trades stay as cleared")
    delta = after.grid_cost_micro - before.grid_cost_micro
    home = household_account(after.agent)
    return _transfer(after, Cause.CORRECTION, payer=home, payee=GRID_ACCOUNT, amount_micro=delta)


def balances(postings: Iterable[Posting]) -> Counter[str]:
    """Each account's balance (micro-units; + owes, - is owed) after ``postings``."""
    totals: Counter[str] = Counter()
    for posting in postings:
        for line in posting.lines:
            totals[line.account] += line.amount_micro
    return totals
