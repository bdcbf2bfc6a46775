"""The key ring against a plain model: any sequence of registrations, rotations and
revocations leaves exactly the model's keys valid, and a replay of its entries (what
``ledger verify`` and a restart do) ends in the same state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.keyring import KeyLogError, KeyRing

POOL = [SigningKey.generate().verifying for _ in range(5)]
AGENTS = ("h1", "h2")

# (agent, key index to make current or None, key indices to revoke)
step = st.tuples(
    st.sampled_from(AGENTS),
    st.none() | st.integers(0, len(POOL) - 1),
    st.frozensets(st.integers(0, len(POOL) - 1), max_size=2),
)


def _apply_all(ring: KeyRing, entries: list[NewEntry], first: int) -> None:
    for at, e in enumerate(entries, start=first):
        ring.apply(e.kind, e.agent, json.loads(e.data), at=at)


def _outcome(ring: KeyRing, agent: str, kid: str) -> RejectReason | None:
    """What the ledger does with a well-signed message of ``agent`` naming ``kid``."""
    try:
        key = ring.key_for(agent, kid)
    except MessageError as exc:
        return exc.reason
    return None if key.kid == kid else RejectReason.KEY_MISMATCH  # as verify() says


@dataclass
class _Model:
    current: dict[str, str] = field(default_factory=dict)  # agent -> kid
    former: dict[str, set[str]] = field(default_factory=dict)  # rotated out
    revoked: dict[str, set[str]] = field(default_factory=dict)

    def expected(self, agent: str, kid: str) -> RejectReason | None:
        if agent not in self.current:
            return RejectReason.UNKNOWN_KEY
        revoked = self.revoked.get(agent, set())
        if kid in revoked or self.current[agent] in revoked:
            return RejectReason.REVOKED_KEY
        if kid == self.current[agent]:
            return None
        if kid in self.former.get(agent, set()):
            return RejectReason.ROTATED_KEY
        return RejectReason.KEY_MISMATCH


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=8))
def test_the_ring_follows_the_model_and_replays_to_the_same_state(
    steps: list[tuple[str, int | None, frozenset[int]]],
) -> None:
    ring, model = KeyRing(), _Model()
    log: list[NewEntry] = []
    for agent, key_index, revoke in steps:
        kid = None if key_index is None else POOL[key_index].kid
        wanted = {} if key_index is None else {agent: POOL[key_index]}
        reasons = {agent: {POOL[i].kid: "r" for i in revoke}} if revoke else {}
        known = model.current.get(agent)
        refused = (known is None and kid is None and bool(revoke)) or (
            known is not None and kid not in (None, known) and kid in model.revoked[agent]
        )
        try:
            entries = ring.plan(wanted, reasons, interval=0)
        except KeyLogError:
            assert refused
            continue
        assert not refused
        _apply_all(ring, entries, len(log))
        log += entries
        if kid is not None and kid != known:
            former = model.former.setdefault(agent, set())
            if known is not None:
                former.add(known)
            former.discard(kid)
            model.current[agent] = kid
        model.revoked.setdefault(agent, set()).update(POOL[i].kid for i in revoke)
        assert ring.plan(wanted, reasons, interval=0) == []  # nothing left to log
    for agent in AGENTS:
        for key in POOL:
            assert _outcome(ring, agent, key.kid) is model.expected(agent, key.kid)
    replayed = KeyRing()
    _apply_all(replayed, log, 0)
    assert (replayed.current, replayed.valid_der, replayed.retired) == (
        ring.current,
        ring.valid_der,
        ring.retired,
    )


def test_a_message_naming_a_key_the_ring_never_saw_is_left_to_the_signature_check() -> None:
    ring = KeyRing()
    _apply_all(ring, ring.plan({"h1": POOL[0]}, {}, interval=0), 0)
    assert ring.key_for("h1", POOL[1].kid) == POOL[0]  # then verify() says key_mismatch
    with pytest.raises(MessageError) as info:
        ring.key_for("h9", POOL[0].kid)
    assert info.value.reason is RejectReason.UNKNOWN_KEY
