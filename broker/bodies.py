"""The bodies of wattmesh's messages: what each kind says, and its strict schema.

Quantities are integers only: energy in Wh, power in W, prices in micro-units of the
currency per kWh, times in epoch seconds (UTC). Each body parses from the decoded JSON
object (``from_json``: exact keys, every field checked, MessageError naming what is
wrong) and back (``to_json``). The signed envelope around them is
:mod:`broker.messages`, which re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from wattmesh.broker._validate import (
    MAX_INT,
    as_object,
    exact_keys,
    get_choice,
    get_int,
    get_opt_int,
    get_str,
    schema_error,
)
from wattmesh.broker.audit_bodies import CheckpointNoteBody, ReceiptBody
from wattmesh.broker.errors import RejectReason
from wattmesh.broker.forecast_bodies import (
    MAX_FORECAST_STEPS,
    AnomalyBody,
    ForecastBody,
    HealthBody,
)

__all__ = ["BODY_TYPES", "MAX_FORECAST_STEPS"]

MAX_QUANTITY_WH = 10_000_000  # 10 MWh in one interval is far beyond any household
MAX_POWER_W = 1_000_000  # the schema's bound on a reading's power_w (either sign)
MAX_PRICE_MICRO_PER_KWH = 100_000_000  # 100 currency units per kWh
MAX_TRADES = 1_000_000


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class Phase(StrEnum):
    """What a market announcement says about an interval."""

    OPEN = "open"
    CLEARED = "cleared"
    CLOSED = "closed"


class Body(Protocol):
    KIND: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReadingBody:
    """Cumulative registers (Wh) at ``meter_time`` (epoch s, UTC).

    ``import_wh``/``export_wh`` are the grid meter's registers; ``pv_wh`` is the PV
    generation meter's register (0 for a household without PV). Demand over a period is
    then ``d_import - d_export + d_pv``.

    A household with a battery behind the meter also sends ``battery_in_wh`` and
    ``battery_out_wh``, the battery's cumulative AC energy in and out (both or neither;
    absent, not null, without a battery). Demand is then
    ``d_import - d_export + d_pv - d_battery_in + d_battery_out``.
    """

    KIND: ClassVar[str] = "reading"
    meter_time: int
    import_wh: int
    export_wh: int
    pv_wh: int
    power_w: int  # grid power at meter_time: positive when importing, negative exporting
    battery_in_wh: int | None = None
    battery_out_wh: int | None = None

    def __post_init__(self) -> None:
        if (self.battery_in_wh is None) != (self.battery_out_wh is None):
            raise ValueError("battery_in_wh and battery_out_wh go together")

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "meter_time": self.meter_time,
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "pv_wh": self.pv_wh,
            "power_w": self.power_w,
        }
        if self.battery_in_wh is not None:
            obj["battery_in_wh"] = self.battery_in_wh
            obj["battery_out_wh"] = self.battery_out_wh
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ReadingBody:
        keys = obj.keys()
        if keys in (_READING_KEYS, _READING_BATTERY_KEYS):
            fast = _plain_reading(cls, obj)  # the common case at a glance
            if fast is not None:
                return fast
        required = set(_READING_KEYS)
        battery = keys & {"battery_in_wh", "battery_out_wh"}
        if battery:
            required |= {"battery_in_wh", "battery_out_wh"}
        exact_keys(obj, required, "reading")
        return cls(
            meter_time=get_int(obj, "meter_time"),
            import_wh=get_int(obj, "import_wh"),
            export_wh=get_int(obj, "export_wh"),
            pv_wh=get_int(obj, "pv_wh"),
            power_w=get_int(obj, "power_w", minimum=-MAX_POWER_W, maximum=MAX_POWER_W),
            battery_in_wh=get_int(obj, "battery_in_wh") if battery else None,
            battery_out_wh=get_int(obj, "battery_out_wh") if battery else None,
        )


_READING_KEYS = frozenset({"meter_time", "import_wh", "export_wh", "pv_wh", "power_w"})
_READING_BATTERY_KEYS = _READING_KEYS | {"battery_in_wh", "battery_out_wh"}


def _plain_reading(cls: type[ReadingBody], obj: Mapping[str, Any]) -> ReadingBody | None:
    """The reading when every field of ``obj`` (which has a reading's keys) is an
    integer in its range, else None (the caller's checks then say what is wrong)."""
    power = obj["power_w"]
    battery = len(obj) == len(_READING_BATTERY_KEYS)
    registers = [obj["meter_time"], obj["import_wh"], obj["export_wh"], obj["pv_wh"]]
    if battery:
        registers += (obj["battery_in_wh"], obj["battery_out_wh"])
    if type(power) is not int or not -MAX_POWER_W <= power <= MAX_POWER_W:
        return None
    for value in registers:
        if type(value) is not int or not 0 <= value <= MAX_INT:
            return None
    meter_time, import_wh, export_wh, pv_wh = registers[:4]
    if battery:
        return cls(meter_time, import_wh, export_wh, pv_wh, power, registers[4], registers[5])
    return cls(meter_time, import_wh, export_wh, pv_wh, power)


@dataclass(frozen=True)
class OrderBody:
    """A bid (buy) or offer (sell) for the interval named in the header."""

    KIND: ClassVar[str] = "order"
    side: Side
    quantity_wh: int
    price_micro_per_kwh: int

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side.value,
            "quantity_wh": self.quantity_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> OrderBody:
        side, quantity = obj.get("side"), obj.get("quantity_wh")
        price = obj.get("price_micro_per_kwh")
        if (  # the common case at a glance; anything else gets the checks that say why
            obj.keys() == _ORDER_KEYS
            and type(side) is str
            and side in _SIDES
            and type(quantity) is int
            and type(price) is int
            and 0 <= quantity <= MAX_QUANTITY_WH
            and 0 <= price <= MAX_PRICE_MICRO_PER_KWH
        ):
            return cls(_SIDES[side], quantity, price)
        exact_keys(obj, set(_ORDER_KEYS), "order")
        return cls(
            side=Side(get_choice(obj, "side", ("buy", "sell"))),
            quantity_wh=get_int(obj, "quantity_wh", maximum=MAX_QUANTITY_WH),
            price_micro_per_kwh=get_int(
                obj, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH
            ),
        )


_ORDER_KEYS = frozenset({"side", "quantity_wh", "price_micro_per_kwh"})
_SIDES = {side.value: side for side in Side}


@dataclass(frozen=True)
class AnnouncementBody:
    """The market operator's word on an interval: open, cleared, or market closed."""

    KIND: ClassVar[str] = "announcement"
    phase: Phase
    interval_s: int
    retail_micro_per_kwh: int
    feed_in_micro_per_kwh: int
    price_micro_per_kwh: int | None = None  # the clearing price, once cleared
    volume_wh: int = 0
    tree_size: int = 0
    root: str = ""  # hex Merkle root of the log after this interval

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "interval_s": self.interval_s,
            "retail_micro_per_kwh": self.retail_micro_per_kwh,
            "feed_in_micro_per_kwh": self.feed_in_micro_per_kwh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
            "volume_wh": self.volume_wh,
            "tree_size": self.tree_size,
            "root": self.root,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnnouncementBody:
        exact_keys(
            obj,
            {
                "phase",
                "interval_s",
                "retail_micro_per_kwh",
                "feed_in_micro_per_kwh",
                "price_micro_per_kwh",
                "volume_wh",
                "tree_size",
                "root",
            },
            "announcement",
        )
        return cls(
            phase=Phase(get_choice(obj, "phase", tuple(p.value for p in Phase))),
            interval_s=get_int(obj, "interval_s", minimum=1, maximum=86_400),
            retail_micro_per_kwh=get_int(obj, "retail_micro_per_kwh"),
            feed_in_micro_per_kwh=get_int(obj, "feed_in_micro_per_kwh"),
            price_micro_per_kwh=get_opt_int(obj, "price_micro_per_kwh"),
            volume_wh=get_int(obj, "volume_wh"),
            tree_size=get_int(obj, "tree_size"),
            root=get_str(obj, "root", max_len=64),
        )


@dataclass(frozen=True)
class TradeLine:
    """One fill: ``seller`` delivers ``quantity_wh`` to ``buyer`` at the interval's price."""

    buyer: str
    seller: str
    quantity_wh: int
    price_micro_per_kwh: int

    def to_json(self) -> dict[str, Any]:
        return {
            "buyer": self.buyer,
            "seller": self.seller,
            "quantity_wh": self.quantity_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
        }

    @classmethod
    def from_json(cls, value: Any) -> TradeLine:
        obj = as_object(value, "trade")
        exact_keys(obj, {"buyer", "seller", "quantity_wh", "price_micro_per_kwh"}, "trade")
        return cls(
            buyer=get_str(obj, "buyer"),
            seller=get_str(obj, "seller"),
            quantity_wh=get_int(obj, "quantity_wh", maximum=MAX_QUANTITY_WH),
            price_micro_per_kwh=get_int(obj, "price_micro_per_kwh"),
        )


@dataclass(frozen=True)
class TradesBody:
    """Every trade of one interval, as cleared and logged."""

    KIND: ClassVar[str] = "trades"
    trades: tuple[TradeLine, ...]

    def to_json(self) -> dict[str, Any]:
        return {"trades": [t.to_json() for t in self.trades]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TradesBody:
        exact_keys(obj, {"trades"}, "trades")
        items = obj["trades"]
        if not isinstance(items, list) or len(items) > MAX_TRADES:
            raise schema_error("trades must be a list")
        return cls(trades=tuple(TradeLine.from_json(t) for t in items))


@dataclass(frozen=True)
class RejectionBody:
    """Why the ledger refused message ``ref`` (its message id) from this household."""

    KIND: ClassVar[str] = "rejection"
    ref: str
    ref_seq: int | None
    reason: RejectReason
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "ref_seq": self.ref_seq,
            "reason": self.reason.value,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RejectionBody:
        exact_keys(obj, {"ref", "ref_seq", "reason", "detail"}, "rejection")
        return cls(
            ref=get_str(obj, "ref", max_len=64),
            ref_seq=get_opt_int(obj, "ref_seq"),
            reason=RejectReason(get_choice(obj, "reason", tuple(r.value for r in RejectReason))),
            detail=get_str(obj, "detail", max_len=512),
        )


class Presence(StrEnum):
    """What a household's status says about its agent."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class StatusBody:
    """A household agent's availability, retained on its status topic: ``online`` when
    it connects, ``offline`` as its MQTT last will or before a clean shutdown. Signed
    by the household like everything else; the header's ``seq`` orders a household's
    statuses (a receiver ignores one not above the last it accepted), ``interval``
    and ``expires`` are 0."""

    KIND: ClassVar[str] = "status"
    state: Presence

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> StatusBody:
        exact_keys(obj, {"state"}, "status")
        return cls(Presence(get_choice(obj, "state", tuple(p.value for p in Presence))))


_SUMMARY_KEYS = frozenset(
    {
        "interval",
        "orders",
        "readings",
        "households",
        "trades",
        "volume_wh",
        "price_micro_per_kwh",
        "tree_size",
        "root",
        "rejections",
        "redeliveries",
    }
)
_REASONS = frozenset(r.value for r in RejectReason)


@dataclass(frozen=True)
class SummaryBody:
    """The operator's summary of a closed trading interval (the one its log line
    prints), retained on ``market/summary``: what was logged (orders, readings and
    trades of the ``households`` registered, the volume and clearing price, the log's
    size and hex root after it) and what was not (messages rejected per reason and
    redeliveries ignored since the previous summary). ``interval`` is the header's."""

    KIND: ClassVar[str] = "summary"
    interval: int
    orders: int
    readings: int
    households: int
    trades: int
    volume_wh: int
    price_micro_per_kwh: int | None
    tree_size: int
    root: str  # 64 lowercase hex digits
    rejections: Mapping[str, int]  # reason (RejectReason value) -> count, counts >= 1
    redeliveries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "orders": self.orders,
            "readings": self.readings,
            "households": self.households,
            "trades": self.trades,
            "volume_wh": self.volume_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
            "tree_size": self.tree_size,
            "root": self.root,
            "rejections": dict(sorted(self.rejections.items())),
            "redeliveries": self.redeliveries,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SummaryBody:
        exact_keys(obj, set(_SUMMARY_KEYS), "summary")
        root = get_str(obj, "root", max_len=64)
        if len(root) != 64 or root.strip("0123456789abcdef"):
            raise schema_error("root must be 64 lowercase hex digits")
        rejections = as_object(obj["rejections"], "rejections")
        if len(rejections) > len(_REASONS) or not rejections.keys() <= _REASONS:
            raise schema_error(f"rejections must count by reason: {', '.join(sorted(_REASONS))}")
        counts = {reason: get_int(rejections, reason, minimum=1) for reason in rejections}
        price = None
        if obj["price_micro_per_kwh"] is not None:
            price = get_int(obj, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH)
        return cls(
            interval=get_int(obj, "interval"),
            orders=get_int(obj, "orders"),
            readings=get_int(obj, "readings"),
            households=get_int(obj, "households"),
            trades=get_int(obj, "trades", maximum=MAX_TRADES),
            volume_wh=get_int(obj, "volume_wh"),
            price_micro_per_kwh=price,
            tree_size=get_int(obj, "tree_size", minimum=1),
            root=root,
            rejections=dict(sorted(counts.items())),
            redeliveries=get_int(obj, "redeliveries"),
        )


BODY_TYPES: dict[str, Any] = {
    cls.KIND: cls
    for cls in (
        ReadingBody,
        OrderBody,
        ForecastBody,
        AnomalyBody,
        HealthBody,
        AnnouncementBody,
        TradesBody,
        RejectionBody,
        StatusBody,
        SummaryBody,
        CheckpointNoteBody,
        ReceiptBody,
    )
}
