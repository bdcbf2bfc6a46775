"""Small builders for ledger tests: households with real keys and signed messages."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from broker.keys import SigningKey
from broker.messages import OrderBody, ReadingBody, Side, sign_message
from ledger.append_only import trigger_names
from ledger.store import APPEND_ONLY_TABLES

MARKET = "test"
T0 = 1_750_000_500 - 1_750_000_500 % 900  # an interval start
STEP = 900


@dataclass
class House:
    agent: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    import_wh: int = 0
    export_wh: int = 0
    pv_wh: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def reading(self, interval: int, *, market: str = MARKET, seq: int | None = None) -> bytes:
        body = ReadingBody(interval, self.import_wh, self.export_wh, self.pv_wh, 0)
        return sign_message(
            self.key,
            body,
            market=market,
            interval=interval,
            agent=self.agent,
            seq=self.next_seq() if seq is None else seq,
            expires=interval + 7 * 86_400,
        ).to_wire()

    def order(
        self,
        interval: int,
        side: Side,
        quantity_wh: int,
        price: int,
        *,
        market: str = MARKET,
        expires: int | None = None,
        seq: int | None = None,
    ) -> bytes:
        return sign_message(
            self.key,
            OrderBody(side, quantity_wh, price),
            market=market,
            interval=interval,
            agent=self.agent,
            seq=self.next_seq() if seq is None else seq,
            expires=interval + STEP if expires is None else expires,
        ).to_wire()

    def meter(self, *, import_wh: int = 0, export_wh: int = 0, pv_wh: int = 0) -> None:
        """Advance the registers by the given energy."""
        self.import_wh += import_wh
        self.export_wh += export_wh
        self.pv_wh += pv_wh


def drop_append_only_triggers(engine: Engine) -> None:
    """What an attacker with database admin rights does before rewriting log rows."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for table in APPEND_ONLY_TABLES:
            for name in trigger_names(table):
                on = f' ON "{table}"' if postgres else ""
                conn.execute(sa.text(f'DROP TRIGGER IF EXISTS "{name}"{on}'))
