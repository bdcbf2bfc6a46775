"""Which key of a household is valid at each point of the log.

Registration, rotation, revocation.

Pure state, no I/O. The ledger (:mod:`ledger.ledger`) asks it which ``key``,
``key_rotation`` and ``key_revocation`` entries a registry calls for, applies each one
it logged (and every such entry when it restarts), and checks each message's key
against it. ``ledger verify`` (:mod:`ledger.verify`) applies the same entries in log
order, so a message is checked against the key that was valid at its position:

- ``key``: the agent's first key. An agent is registered once; a new key is a rotation.
- ``key_rotation``: names the agent's current key (``old_kid``) and replaces it from
  this entry on; the old key verifies nothing after it.
- ``key_revocation``: key ``kid`` of the agent verifies nothing after it. When it is the
  current key, the agent has no valid key until a rotation names a new one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from wattmesh.broker.errors import (
    FailureError,
    KeyFileError,
    LedgerError,
    MessageError,
    RejectReason,
)
from wattmesh.broker.keys import VerifyingKey
from wattmesh.ledger.entries import (
    EntryKind,
    NewEntry,
    key_entry,
    key_revocation_entry,
    key_rotation_entry,
)

__all__ = ["KeyLogError", "check_kid", "check_reason"]

KEY_KINDS = frozenset({EntryKind.KEY, EntryKind.KEY_ROTATION, EntryKind.KEY_REVOCATION})
MAX_REASON_LEN = 200
_HEX = frozenset("0123456789abcdef")


class KeyLogError(LedgerError, FailureError, ValueError):
    """A key entry that does not follow from the ones before it (or does not parse)."""


def check_kid(kid: object) -> str:
    """``kid`` if it is a key id (64 lowercase hex digits); else KeyLogError."""
    if not isinstance(kid, str) or len(kid) != 64 or not set(kid) <= _HEX:
        raise KeyLogError(f"{kid!r} is not a key id (64 lowercase hex digits)")
    return kid


def check_reason(reason: object) -> str:
    """A revocation reason: 1-200 printable characters."""
    if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_LEN:
        raise KeyLogError(f"a revocation reason is 1-{MAX_REASON_LEN} characters")
    if not reason.isprintable():
        raise KeyLogError("a revocation reason may not hold control characters")
    return reason


@dataclass(frozen=True)
class Retired:
    """A key that verifies nothing any more: where that was logged, and why."""

    kind: RejectReason  # ROTATED_KEY or REVOKED_KEY
    at: int  # log position of the rotation or revocation entry
    reason: str = ""


class KeyRing:
    """The keys of every registered household as of some point in the log."""

    def __init__(self) -> None:
        self.current: dict[str, VerifyingKey] = {}  # latest key per agent (maybe revoked)
        self.valid_der: dict[str, bytes] = {}  # agent -> DER of its valid key, if any
        self.retired: dict[tuple[str, str], Retired] = {}  # (agent, kid)
        self.retired_agents: set[str] = set()  # agents with a key in ``retired``
        self._valid: dict[str, VerifyingKey] = {}  # kept in step with valid_der
        self._applied: list[int] = []  # log positions of the entries applied, in order

    @property
    def applied(self) -> tuple[int, ...]:
        """The log positions of the key entries applied so far, in order: applying
        those entries again to a new ring gives this one (a snapshot names them)."""
        return tuple(self._applied)

    @property
    def valid(self) -> Mapping[str, VerifyingKey]:
        """Households with a valid key, and that key (a read-only view, kept up to date:
        the ledger looks keys up for every message of a batch)."""
        return MappingProxyType(self._valid)

    # --- what a registry calls for -----------------------------------------------------

    def plan(
        self,
        keys: Mapping[str, VerifyingKey],
        revoked: Mapping[str, Mapping[str, str]],
        *,
        interval: int,
    ) -> list[NewEntry]:
        """The entries that bring the ring to ``keys`` (each agent's current key) and
        ``revoked`` (agent -> kid -> reason): per agent in id order, its registration or
        rotation, then its new revocations in kid order. Nothing is changed here."""
        entries: list[NewEntry] = []
        for agent in sorted(set(keys) | set(revoked)):
            known = self.current.get(agent)
            key = keys.get(agent)
            if key is None and known is None:
                raise KeyLogError(f"cannot revoke a key of {agent}: it is not registered")
            if key is not None and known is None:
                entries.append(key_entry(agent=agent, key=key, interval=interval))
            elif key is not None and known is not None and key.kid != known.kid:
                gone = self.retired.get((agent, key.kid))
                if gone is not None and gone.kind is RejectReason.REVOKED_KEY:
                    raise KeyLogError(f"key {key.kid[:16]} of {agent} was revoked")
                entries.append(
                    key_rotation_entry(agent=agent, old_kid=known.kid, key=key, interval=interval)
                )
            for kid in sorted(revoked.get(agent, {})):
                gone = self.retired.get((agent, kid))
                if gone is None or gone.kind is not RejectReason.REVOKED_KEY:
                    reason = check_reason(revoked[agent][kid])
                    entries.append(
                        key_revocation_entry(
                            agent=agent, kid=check_kid(kid), reason=reason, interval=interval
                        )
                    )
        return entries

    # --- applying logged entries -------------------------------------------------------

    def apply(self, kind: str, agent: str | None, obj: Mapping[str, Any], *, at: int) -> None:
        """Apply one logged key entry (its kind, agent column, data) found at ``at``.

        Raises KeyLogError when it does not parse, disagrees with its agent column, or
        does not follow from the entries before it.
        """
        name = obj.get("agent")
        if not isinstance(name, str) or name != agent:
            raise KeyLogError(f"{kind} entry's agent does not match its column")
        if kind == EntryKind.KEY_REVOCATION:
            self._revoke(name, check_kid(obj.get("kid")), check_reason(obj.get("reason")), at)
            self._applied.append(at)
            return
        key = _logged_key(obj, kind)
        known = self.current.get(name)
        if kind == EntryKind.KEY:
            if known is not None:
                raise KeyLogError(f"{name} is registered already; a new key is a key_rotation")
        elif kind == EntryKind.KEY_ROTATION:
            if known is None:
                raise KeyLogError(f"key_rotation for {name}, which is not registered")
            if obj.get("old_kid") != known.kid:
                raise KeyLogError(f"key_rotation does not name {name}'s current key")
            if key.kid == known.kid:
                raise KeyLogError("key_rotation to the same key")
            gone = self.retired.get((name, key.kid))
            if gone is not None and gone.kind is RejectReason.REVOKED_KEY:
                raise KeyLogError(f"key_rotation to a key of {name} revoked at entry {gone.at}")
            self.retired.setdefault((name, known.kid), Retired(RejectReason.ROTATED_KEY, at))
            self.retired_agents.add(name)
            self.retired.pop((name, key.kid), None)  # rotated back to an earlier key
        else:
            raise KeyLogError(f"{kind} is not a key entry")
        self.current[name] = key
        self.valid_der[name] = key.der()
        self._valid[name] = key
        self._applied.append(at)

    def _revoke(self, agent: str, kid: str, reason: str, at: int) -> None:
        if agent not in self.current:
            raise KeyLogError(f"key_revocation for {agent}, which is not registered")
        gone = self.retired.get((agent, kid))
        if gone is not None and gone.kind is RejectReason.REVOKED_KEY:
            raise KeyLogError(f"key {kid[:16]} of {agent} was revoked already at entry {gone.at}")
        self.retired[(agent, kid)] = Retired(RejectReason.REVOKED_KEY, at, reason)
        self.retired_agents.add(agent)
        if self.current[agent].kid == kid:
            del self.valid_der[agent]
            del self._valid[agent]

    # --- checking messages -------------------------------------------------------------

    def key_for(self, agent: str, kid: str) -> VerifyingKey:
        """The key that checks a message of ``agent`` naming ``kid``; MessageError with
        ``unknown_key``, ``revoked_key`` (``kid`` is revoked, or the agent's current key
        is) or ``rotated_key`` when there is none. A kid the ring never saw is left to
        the signature check (``key_mismatch``)."""
        current = self.current.get(agent)
        if current is None:
            raise MessageError(RejectReason.UNKNOWN_KEY, f"{agent} is not registered")
        problem = self.why_not(agent, kid)
        if problem is not None and problem[0] is RejectReason.REVOKED_KEY:
            raise MessageError(*problem)
        if agent not in self.valid_der:
            raise MessageError(RejectReason.REVOKED_KEY, f"{agent} has no valid key: revoked")
        if problem is not None:
            raise MessageError(*problem)
        return current

    def why_not(self, agent: str, kid: str) -> tuple[RejectReason, str] | None:
        """Why key ``kid`` of ``agent`` verifies nothing now, or None."""
        gone = self.retired.get((agent, kid))
        if gone is None:
            return None
        if gone.kind is RejectReason.REVOKED_KEY:
            return gone.kind, f"key {kid[:16]} of {agent} was revoked ({gone.reason})"
        return gone.kind, f"key {kid[:16]} of {agent} was replaced by a rotation"


def _logged_key(obj: Mapping[str, Any], kind: str) -> VerifyingKey:
    try:
        key = VerifyingKey.from_der(base64.b64decode(obj["public_key"], validate=True))
    except (KeyError, TypeError, ValueError, binascii.Error, KeyFileError) as exc:
        raise KeyLogError(f"{kind} entry holds no valid public key") from exc
    if key.kid != obj.get("kid"):
        raise KeyLogError(f"{kind} entry's key id does not match its key")
    return key
