"""How nodes keep one another's presences: what they send, and when a peer must resend all.

Each node owns its presences and broadcasts their changes as numbered ``Delta``s (one per
interval at most), plus a ``Clock`` every second saying how far it has got. A receiver applies
a peer's deltas in order; a gap (a lost message, a Redis restart), a new epoch (a restarted
tracker) or a peer it has never heard makes it ask for a ``Snapshot`` (``SyncRequest``), which
replaces everything it holds of that peer, so nothing a lost leave left behind stays a ghost.
Pure data and rules, no I/O: ``actors.presence`` sends and receives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import attrs

from .address import Address
from .presence_table import Meta
from .wire_codec import wire_type

Entry = list[Any]
"""A meta on the wire: ``[topic, key, ref, data]`` (its node is the sender)."""


@wire_type
@attrs.frozen
class Delta:
    """A node's presences that came (``joins``: entries) and went (``leaves``: refs) since its
    last delta; ``seq`` counts its deltas within ``epoch`` (one run of its tracker)."""

    node: str
    epoch: str
    seq: int
    joins: list[Entry]
    leaves: list[str]
    tracker: Address


@wire_type
@attrs.frozen
class Clock:
    """How far a node's deltas have got (sent every second, so a lost delta is noticed)."""

    node: str
    epoch: str
    seq: int
    tracker: Address


@wire_type
@attrs.frozen
class SyncRequest:
    """Send me all your presences (to ``tracker``)."""

    tracker: Address


@wire_type
@attrs.frozen
class Snapshot:
    """All of a node's presences as of its delta ``seq``."""

    node: str
    epoch: str
    seq: int
    entries: list[Entry]


class Verdict(enum.Enum):
    """What to do with a peer's delta or clock."""

    APPLY = "apply"
    SYNC = "sync"
    """Ask the peer for a snapshot."""
    IGNORE = "ignore"


@attrs.define
class _Peer:
    epoch: str | None = None
    seq: int = 0
    asked_at: float | None = None
    """When a snapshot was asked for and has not come yet."""


@attrs.define
class PeerClocks:
    """Where each peer's deltas have got, as far as this node has applied them."""

    resync_after: float = 3.0
    """Seconds to wait for a snapshot before asking again (the request may have been lost)."""
    _peers: dict[str, _Peer] = attrs.field(factory=dict, init=False)

    def delta(self, node: str, epoch: str, seq: int, now: float) -> Verdict:
        """A delta came: apply it if it is the next one, else ask for a snapshot."""
        peer = self._peers.setdefault(node, _Peer())
        if peer.asked_at is not None:
            return self._waiting(peer, now)
        if peer.epoch == epoch and seq == peer.seq + 1:
            peer.seq = seq
            return Verdict.APPLY
        if peer.epoch == epoch and seq <= peer.seq:
            return Verdict.IGNORE  # already in a snapshot we applied
        return self._ask(peer, now)

    def clock(self, node: str, epoch: str, seq: int, now: float) -> Verdict:
        """A clock came: ask for a snapshot if we have missed anything (or know nothing)."""
        peer = self._peers.setdefault(node, _Peer())
        if peer.asked_at is not None:
            return self._waiting(peer, now)
        if peer.epoch == epoch and seq == peer.seq:
            return Verdict.IGNORE
        return self._ask(peer, now)

    def ask(self, node: str, now: float) -> None:
        """A snapshot was asked of ``node`` without a delta or clock from it (just met)."""
        self._ask(self._peers.setdefault(node, _Peer()), now)

    def snapshot(self, node: str, epoch: str, seq: int) -> None:
        """A snapshot was applied: the peer's deltas go on from ``seq``."""
        self._peers[node] = _Peer(epoch, seq)

    def forget(self, node: str) -> None:
        """The peer is gone: if it comes back, it is synced from scratch."""
        self._peers.pop(node, None)

    def knows(self, node: str) -> bool:
        """Whether ``node`` has been heard (synced or being synced)."""
        return node in self._peers

    def _waiting(self, peer: _Peer, now: float) -> Verdict:
        assert peer.asked_at is not None
        if now - peer.asked_at >= self.resync_after:
            return self._ask(peer, now)
        return Verdict.IGNORE

    def _ask(self, peer: _Peer, now: float) -> Verdict:
        peer.asked_at = now
        return Verdict.SYNC


@attrs.define
class Outgoing:
    """This node's changes not yet broadcast, net: a meta that came and went in between is
    not sent at all, and one that went and came back is sent as it is now."""

    _changes: dict[str, Entry | None] = attrs.field(factory=dict, init=False)

    def joined(self, topic: str, key: str, meta: Meta) -> None:
        self._changes[meta.ref] = [topic, key, meta.ref, dict(meta.data)]

    def left(self, ref: str) -> None:
        if self._changes.get(ref) is not None:
            del self._changes[ref]
        else:
            self._changes[ref] = None

    def __bool__(self) -> bool:
        return bool(self._changes)

    def take(self) -> tuple[list[Entry], list[str]]:
        """The joins and leaves to broadcast, and start afresh."""
        joins = [entry for entry in self._changes.values() if entry is not None]
        leaves = [ref for ref, entry in self._changes.items() if entry is None]
        self._changes = {}
        return joins, leaves


def entries_of(items: list[tuple[str, str, Meta]]) -> list[Entry]:
    """``(topic, key, meta)`` triples as wire entries."""
    return [[topic, key, meta.ref, dict(meta.data)] for topic, key, meta in items]


def metas_of(node: str, entries: Any) -> Iterator[tuple[str, str, Meta]]:
    """Wire entries from ``node`` as ``(topic, key, meta)``; malformed ones are skipped (the
    broker may carry junk), as is a ref that does not name ``node``."""
    if type(entries) is not list:
        return
    for entry in entries:
        match entry:
            case [str(topic), str(key), str(ref), dict(data)] if ref.startswith(node + "#"):
                yield topic, key, Meta(ref, node, data)
