"""The household's own audit of the operator's log: checkpoints, receipts, alarms.

The agent keeps the last checkpoint it verified (:class:`CheckpointFile`, a small file
in its state directory, written atomically), and for each signed ``checkpoint`` the
operator publishes it checks (docs/protocol.md, "Audit"):

* the note is signed by the operator's key, for this market's log (else
  ``bad_signature``);
* it is not older than the saved one (``stale_checkpoint``), states the same root at
  the same size (else ``fork``), and an RFC 9162 consistency proof from exactly the
  saved size and root holds (else ``fork``). A proof from another size asks the
  operator for one from the saved size (:attr:`CheckpointOutcome.request_from`);
* every receipt entry has a valid inclusion proof against a signed checkpoint and is
  about this household (else ``bad_proof``);
* every reading and order it sent and the ledger did not refuse shows up in a receipt
  by the end of the next interval's receipt, and every trade the operator announced
  for it is in that interval's receipt (else ``missing_entry``; after a lost
  connection, whose receipts are gone, only if its interval's receipt was checked).

The checks are plain functions and one state machine (:class:`Auditor`) without I/O
but the checkpoint file; :mod:`agents._audit_feed` feeds it and logs its findings;
the agent reports them in its diagnostics. Sizes count leaves; hashes are 32-byte
SHA-256.
"""

from __future__ import annotations

import json
import os
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from wattmesh.broker.audit_bodies import CheckpointNoteBody, ReceiptBody, ReceiptEntry, message_leaf
from wattmesh.broker.errors import WattmeshError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import SignedMessage, TradeLine, TradesBody
from wattmesh.broker.tlog import (
    CheckpointBody,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)

CHECKPOINT_FILE: Final = "checkpoint.note"
MAX_KNOWN_ROOTS: Final = 16  # signed roots kept to check receipts that arrive late
MAX_PENDING_RECEIPTS: Final = 16
MAX_EXPECTED: Final = 10_000  # own messages awaiting their receipt


class Alarm(StrEnum):
    """What the audit found wrong. The values appear in logs and diagnostics."""

    FORK = "fork"
    MISSING_ENTRY = "missing_entry"
    BAD_PROOF = "bad_proof"
    BAD_SIGNATURE = "bad_signature"
    STALE_CHECKPOINT = "stale_checkpoint"


@dataclass(frozen=True)
class Finding:
    alarm: Alarm
    detail: str


class CheckpointStore(Protocol):
    """Where the last verified checkpoint note is kept."""

    def load(self) -> str | None: ...

    def save(self, note: str) -> None: ...


class MemoryCheckpointStore:
    """Nothing survives the process (simulations)."""

    def __init__(self) -> None:
        self.note: str | None = None

    def load(self) -> str | None:
        return self.note

    def save(self, note: str) -> None:
        self.note = note


class CheckpointFile:
    """The note in one UTF-8 file, replaced atomically (temporary file, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save(self, note: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(note)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --------------------------------------------------------------------------- pure checks


def open_note(note: str, key: VerifyingKey, origin: str) -> CheckpointBody | Finding:
    """The checkpoint a note states, or a ``bad_signature`` finding with the reason."""
    try:
        return open_checkpoint(note, key, origin=origin)
    except WattmeshError as exc:
        return Finding(Alarm.BAD_SIGNATURE, f"checkpoint note: {exc}")


class Step(StrEnum):
    """What to do with a new, signed checkpoint."""

    ACCEPT = "accept"  # it extends the saved one (or there is none): save it
    KEEP = "keep"  # the saved one itself, or an older one that is not the current head
    REQUEST = "request"  # ask for a consistency proof from the saved size
    ALARM = "alarm"


@dataclass(frozen=True)
class CheckpointVerdict:
    step: Step
    finding: Finding | None = None


def judge_checkpoint(
    saved: CheckpointBody | None,
    new: CheckpointBody,
    old_size: int,
    proof: Sequence[bytes],
    *,
    current: bool,
) -> CheckpointVerdict:
    """Decide about ``new`` (already opened with the operator's key) given ``saved``.

    ``old_size``/``proof`` is the consistency proof the message carries; ``current``
    is true for the market's head (``market/checkpoint``), false for an answer to an
    audit request (which may be overtaken by a newer head).
    """
    if saved is None:
        return CheckpointVerdict(Step.ACCEPT)
    if new.tree_size <= saved.tree_size:
        return _not_newer(saved, new, current=current)
    if old_size != saved.tree_size:
        return CheckpointVerdict(Step.REQUEST)
    if verify_consistency(saved.tree_size, new.tree_size, saved.root, new.root, proof):
        return CheckpointVerdict(Step.ACCEPT)
    detail = f"the signed tree of size {new.tree_size} does not extend the one of {saved.tree_size}"
    return CheckpointVerdict(Step.ALARM, Finding(Alarm.FORK, detail))


def _not_newer(saved: CheckpointBody, new: CheckpointBody, *, current: bool) -> CheckpointVerdict:
    if new.tree_size == saved.tree_size:
        if new.root == saved.root:
            return CheckpointVerdict(Step.KEEP)
        detail = f"two different signed trees of size {new.tree_size}"
        return CheckpointVerdict(Step.ALARM, Finding(Alarm.FORK, detail))
    if not current:
        return CheckpointVerdict(Step.KEEP)
    detail = f"the log's head has {new.tree_size} entries, {saved.tree_size} were seen"
    return CheckpointVerdict(Step.ALARM, Finding(Alarm.STALE_CHECKPOINT, detail))


def entry_parties(data: bytes) -> frozenset[str]:
    """The households a log entry is about (empty for one that is not JSON)."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return frozenset()
    if not isinstance(obj, dict):
        return frozenset()
    if obj.get("kind") == "trade":
        return frozenset(str(obj.get(k)) for k in ("buyer", "seller"))
    signed = obj.get("signed")
    if obj.get("kind") == "anomaly" and isinstance(signed, dict):
        body = signed.get("body")  # the forecaster signs a flag about a household
        return frozenset({str(body.get("agent"))} if isinstance(body, dict) else ())
    if isinstance(signed, dict):
        return frozenset({str(signed.get("agent"))})
    return frozenset({str(obj.get("agent"))})


def check_entry(entry: ReceiptEntry, *, agent: str, tree_size: int, root: bytes) -> Finding | None:
    """None when ``entry`` is about ``agent`` and included in the tree (size, root)."""
    if not verify_inclusion(entry.data, entry.index, tree_size, entry.proof, root):
        detail = f"entry {entry.index} is not included in the signed tree of size {tree_size}"
        return Finding(Alarm.BAD_PROOF, detail)
    if agent not in entry_parties(entry.data):
        return Finding(Alarm.BAD_PROOF, f"entry {entry.index} is not about {agent}")
    return None


def trade_key(line: TradeLine) -> tuple[str, str, int, int]:
    return (line.buyer, line.seller, line.quantity_wh, line.price_micro_per_kwh)


def logged_trades(entries: Sequence[ReceiptEntry]) -> Counter[tuple[str, str, int, int]]:
    """The (buyer, seller, quantity, price) of the trade entries among ``entries``."""
    found: Counter[tuple[str, str, int, int]] = Counter()
    for entry in entries:
        try:
            obj = json.loads(entry.data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(obj, dict) or obj.get("kind") != "trade":
            continue
        qty, price = obj.get("quantity_wh"), obj.get("price_micro_per_kwh")
        if isinstance(qty, int) and isinstance(price, int):
            found[(str(obj.get("buyer")), str(obj.get("seller")), qty, price)] += 1
    return found


# --------------------------------------------------------------------------- the auditor


@dataclass
class _Expected:
    interval: int
    kind: str
    seq: int
    message_id: str
    excused: bool = False  # the link dropped since: its receipt may never have come


@dataclass
class CheckpointOutcome:
    """Findings, and the size to ask a consistency proof from (None: no request)."""

    findings: list[Finding] = field(default_factory=list)
    request_from: int | None = None


class Auditor:
    """One household's audit state: the saved checkpoint and what it still expects."""

    def __init__(
        self, agent_id: str, *, origin: str, key: VerifyingKey, store: CheckpointStore
    ) -> None:
        self.agent_id = agent_id
        self.origin = origin
        self.key = key
        self.store = store
        self.alarms: Counter[str] = Counter()
        self.last_alarm: Finding | None = None
        self.receipts_checked = 0
        self.entries_checked = 0
        self.unverified = 0  # own messages whose receipt was lost with the connection
        self._verified: set[int] = set()  # intervals whose receipt was checked
        self._head_interval: int | None = None  # interval of the last head checkpoint
        self.saved: CheckpointBody | None = None
        self._roots: OrderedDict[int, bytes] = OrderedDict()
        self._expected: OrderedDict[bytes, _Expected] = OrderedDict()  # leaf bytes
        self._refused: set[str] = set()  # message ids the ledger rejected
        self._parts: dict[tuple[int, int], dict[int, ReceiptBody]] = {}  # (interval, size)
        self._trades: dict[int, Counter[tuple[str, str, int, int]]] = {}
        self._logged: dict[int, Counter[tuple[str, str, int, int]]] = {}
        self._load()

    def _load(self) -> None:
        note = self.store.load()
        if note is None:
            return
        opened = open_note(note, self.key, self.origin)
        if isinstance(opened, Finding):
            self._raise(Finding(opened.alarm, f"saved {opened.detail}"))
            return
        self.saved = opened
        self._know(opened)

    # --- findings --------------------------------------------------------------------

    def _raise(self, finding: Finding) -> Finding:
        self.alarms[finding.alarm.value] += 1
        self.last_alarm = finding
        return finding

    def report(self) -> dict[str, object]:
        """The ``audit`` section of the diagnostics (docs/protocol.md)."""
        last = self.last_alarm
        return {
            "checkpoint_size": self.saved.tree_size if self.saved is not None else None,
            "receipts_checked": self.receipts_checked,
            "entries_checked": self.entries_checked,
            "unverified": self.unverified,
            "alarms": dict(sorted(self.alarms.items())),
            "last_alarm": None
            if last is None
            else {"alarm": last.alarm.value, "detail": last.detail},
        }

    def _know(self, body: CheckpointBody) -> None:
        self._roots[body.tree_size] = body.root
        self._roots.move_to_end(body.tree_size)
        while len(self._roots) > MAX_KNOWN_ROOTS:
            self._roots.popitem(last=False)

    # --- own messages ----------------------------------------------------------------

    def expect(self, message: SignedMessage) -> None:
        """Note a reading or order this household sent: it must appear in a receipt."""
        header = message.header
        self._expected[message_leaf(message)] = _Expected(
            header.interval, header.kind, header.seq, message.message_id
        )
        while len(self._expected) > MAX_EXPECTED:
            self._expected.popitem(last=False)

    def reconnected(self) -> None:
        """The connection to the broker dropped: receipts sent meanwhile were lost, so
        messages sent before now need no receipt of their own interval (an alarm only if
        that receipt was checked and lacked them)."""
        for exp in self._expected.values():
            exp.excused = True

    def refused(self, message_id: str) -> None:
        """The ledger rejected message ``message_id``: it is not expected in the log."""
        if len(self._refused) >= MAX_EXPECTED:
            self._refused.clear()
        self._refused.add(message_id)

    # --- checkpoints -----------------------------------------------------------------

    def on_checkpoint(
        self, body: CheckpointNoteBody, *, current: bool, interval: int | None = None
    ) -> CheckpointOutcome:
        """Check a signed checkpoint message (``current``: the market's head, closing
        ``interval``). A new head also settles own messages of intervals before the
        previous head's: their receipts were due before it, so a household whose
        receipts are withheld altogether finds out too."""
        out = CheckpointOutcome()
        opened = open_note(body.note, self.key, self.origin)
        if isinstance(opened, Finding):
            out.findings.append(self._raise(opened))
            return out
        self._know(opened)
        if current and interval is not None:
            if self._head_interval is not None and interval > self._head_interval:
                out.findings += self._judge_expected(before=self._head_interval)
            self._head_interval = max(interval, self._head_interval or interval)
        verdict = judge_checkpoint(self.saved, opened, body.old_size, body.proof, current=current)
        if verdict.finding is not None:
            out.findings.append(self._raise(verdict.finding))
        if verdict.step is Step.ACCEPT:
            self.store.save(body.note)
            self.saved = opened
        elif verdict.step is Step.REQUEST and self.saved is not None:
            out.request_from = self.saved.tree_size
        for key in [k for k in self._parts if k[1] == opened.tree_size]:
            out.findings += self._try_receipt(*key)
        return out

    # --- receipts and trades ---------------------------------------------------------

    def on_receipt(self, interval: int, body: ReceiptBody) -> list[Finding]:
        """Take one part of a receipt; check the receipt once it is complete and signed."""
        if body.household != self.agent_id:
            return [self._raise(Finding(Alarm.BAD_PROOF, f"a receipt for {body.household}"))]
        key = (interval, body.tree_size)
        self._parts.setdefault(key, {})[body.part] = body
        while len(self._parts) > MAX_PENDING_RECEIPTS:
            del self._parts[next(iter(self._parts))]
        return self._try_receipt(*key)

    def on_trades(self, interval: int, body: TradesBody) -> list[Finding]:
        """Take the operator's trades of ``interval``; those of this household must be
        in the interval's receipt."""
        mine = [t for t in body.trades if self.agent_id in (t.buyer, t.seller)]
        self._trades[interval] = Counter(trade_key(t) for t in mine)
        self._trim(self._trades)
        return self._match_trades(interval)

    def _trim(self, table: dict[int, Counter[tuple[str, str, int, int]]]) -> None:
        while len(table) > MAX_PENDING_RECEIPTS:
            del table[min(table)]

    def _try_receipt(self, interval: int, tree_size: int) -> list[Finding]:
        parts = self._parts.get((interval, tree_size), {})
        root = self._roots.get(tree_size)
        if not parts or root is None or len(parts) < next(iter(parts.values())).parts:
            return []
        del self._parts[(interval, tree_size)]
        findings: list[Finding] = []
        good: list[ReceiptEntry] = []
        for entry in (e for part in sorted(parts) for e in parts[part].entries):
            finding = check_entry(entry, agent=self.agent_id, tree_size=tree_size, root=root)
            if finding is not None:
                findings.append(self._raise(finding))
                continue
            good.append(entry)
            self._expected.pop(entry.data, None)
        self.entries_checked += len(good)
        self.receipts_checked += 1
        self._verified.add(interval)
        if len(self._verified) > MAX_EXPECTED:
            self._verified.discard(min(self._verified))
        findings += self._judge_expected(before=interval)
        self._logged[interval] = logged_trades(good)
        self._trim(self._logged)
        return findings + self._match_trades(interval)

    def _judge_expected(self, *, before: int) -> list[Finding]:
        """Own messages of intervals before ``before`` that no receipt showed."""
        findings = []
        for leaf, exp in list(self._expected.items()):
            if exp.interval >= before:
                continue
            del self._expected[leaf]
            if exp.message_id in self._refused:
                self._refused.discard(exp.message_id)
                continue
            if exp.excused and exp.interval not in self._verified:
                self.unverified += 1
                continue
            detail = (
                f"{exp.kind} seq {exp.seq} of interval {exp.interval} is in no verified receipt"
            )
            findings.append(self._raise(Finding(Alarm.MISSING_ENTRY, detail)))
        return findings

    def _match_trades(self, interval: int) -> list[Finding]:
        announced, logged = self._trades.get(interval), self._logged.get(interval)
        if announced is None or logged is None:
            return []
        del self._trades[interval], self._logged[interval]
        missing = announced - logged
        return [
            self._raise(
                Finding(
                    Alarm.MISSING_ENTRY,
                    f"trade {buyer}->{seller} {qty} Wh at {price} of interval {interval}"
                    " is not in the receipt",
                )
            )
            for (buyer, seller, qty, price), count in sorted(missing.items())
            for _ in range(count)
        ]
