"""A node's presence tracker: its table, its subscribers, and its peers on other nodes.

The actor behind ``actors.presence`` (one per node): it monitors the actors it tracks and the
ones subscribed, flushes one diff per interval to the subscribers and one delta to the other
nodes' trackers, and keeps theirs (``presence_sync``'s rules).
"""

from __future__ import annotations

import builtins
import itertools
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from .actor import Actor
from .address import Address
from .errors import ActorError
from .messages import Down, MonitorRef, Timeout
from .presence_sync import (
    Clock,
    Delta,
    Outgoing,
    PeerClocks,
    Snapshot,
    SyncRequest,
    Verdict,
    entries_of,
    metas_of,
)
from .presence_table import Meta, Metas, PresenceTable
from .wire_codec import pack

logger = logging.getLogger("corral.presence")

GROUP = "corral:presence"
"""The group every node's tracker joins: where deltas and clocks go."""

DEFAULT_INTERVAL = 0.1
"""Seconds between diffs: short enough that a member list feels live, long enough that a
burst of joins is one diff (Phoenix broadcasts every 1.5 s)."""

CLOCK_PERIOD = 1.0
"""Seconds between a node's clocks (how soon a lost delta is noticed)."""

_FLUSH = "presence:flush"
_CLOCK = "presence:clock"


class PresenceNotRunning(ActorError):
    """No presence tracker runs on this node."""

    def __init__(self) -> None:
        super().__init__(
            "no presence tracker runs on this node: start one with actors.presence.child_spec() "
            "among the app's children, or `async with actors.presence.open_presence():`"
        )


@attrs.frozen
class PresenceSettings:
    """How often diffs go out and how many messages the tracker may hold."""

    interval: float = attrs.field(default=DEFAULT_INTERVAL, validator=attrs.validators.gt(0))
    clock_period: float = attrs.field(default=CLOCK_PERIOD, validator=attrs.validators.gt(0))
    capacity: int = 1_000_000
    """The tracker's mailbox (a delta it had to drop is recovered by a snapshot)."""


@attrs.frozen
class PresenceStatistics:
    """What the tracker holds and what it has sent."""

    presences: int
    """Metas, all topics and nodes together."""
    local: int
    """Metas this node owns."""
    peers: int
    diffs: int
    """Diffs delivered to subscribers."""
    deltas: int
    """Deltas broadcast to the other nodes."""
    delta_bytes: int
    """Their encoded size, all together."""
    snapshots: int
    """Snapshots this node sent to peers that asked."""


class PresenceTracker:
    """A node's presences and subscribers (one per node; reach it with the module's functions)."""

    def __init__(self, actor: Actor, settings: PresenceSettings) -> None:
        self._actor = actor
        self._node = actor.node
        self._settings = settings
        self._clustered = self._node.backend.node_id is not None
        self._epoch = secrets.token_hex(4)
        self._refs = itertools.count(1)
        self._seq = 0
        self.table = PresenceTable()
        self._outgoing = Outgoing()
        self._clocks = PeerClocks(resync_after=3 * settings.clock_period)
        self._peers: dict[str, Address] = {}  # node -> its tracker
        self._owned: dict[Address, dict[str, None]] = {}  # tracked actor -> its refs
        self._subscribers: dict[str, dict[Address, None]] = {}
        self._subscribed: dict[Address, set[str]] = {}
        self._monitors: dict[Address, MonitorRef] = {}
        self._flush_timer = False
        self._diffs = self._deltas = self._delta_bytes = self._snapshots = 0

    # ---- what actors ask ------------------------------------------------------------------

    def track(self, topic: str, key: str, data: Mapping[str, Any], address: Address) -> str:
        """Add ``address``'s presence under ``topic``/``key``; return its ref."""
        self._local(address, "track")
        if not isinstance(key, str):
            raise TypeError(f"a presence key is a str, not {key!r}")
        data = dict(data)
        pack(data)  # NotPortable now rather than in a delta later
        meta = Meta(f"{self._node.name}#{next(self._refs)}", self._node.name, data)
        self._watch(address)
        self._owned.setdefault(address, {})[meta.ref] = None
        self._add(topic, key, meta)
        return meta.ref

    def untrack(self, topic: str, address: Address) -> int:
        """Remove ``address``'s presences under ``topic``; how many there were."""
        refs = [ref for ref in self._owned.get(address, ()) if self._topic_of(ref) == topic]
        for ref in refs:
            self._drop(address, ref)
        self._unwatch_if_idle(address)
        return len(refs)

    def update(self, topic: str, data: Mapping[str, Any], address: Address) -> builtins.list[str]:
        """Replace the metadata of ``address``'s presences under ``topic`` (each gets a new
        ref: a leave and a join of the same key); the new refs."""
        refs = [ref for ref in self._owned.get(address, ()) if self._topic_of(ref) == topic]
        new = []
        for ref in refs:
            where = self.table.key_of(ref)
            assert where is not None
            self._drop(address, ref)
            new.append(self.track(topic, where[1], data, address))
        return new

    def subscribe(self, topic: str, address: Address) -> Metas:
        """Send ``address`` a ``PresenceDiff`` for each interval in which ``topic`` changes;
        returns the topic as the next diff will find it."""
        self._local(address, "subscribe")
        self._watch(address)
        self._subscribers.setdefault(topic, {})[address] = None
        self._subscribed.setdefault(address, set()).add(topic)
        return self.table.flushed(topic)

    def unsubscribe(self, topic: str, address: Address) -> None:
        """Stop sending ``address`` the diffs of ``topic``."""
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.pop(address, None)
            if not subscribers:
                del self._subscribers[topic]
        topics = self._subscribed.get(address)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._subscribed[address]
        self._unwatch_if_idle(address)

    def statistics(self) -> PresenceStatistics:
        """Presences held, peers, diffs and deltas sent."""
        return PresenceStatistics(
            presences=len(self.table),
            local=self.table.count_owned(self._node.name),
            peers=len(self._peers),
            diffs=self._diffs,
            deltas=self._deltas,
            delta_bytes=self._delta_bytes,
            snapshots=self._snapshots,
        )

    def _local(self, address: Address, what: str) -> None:
        if address.node != self._node.name or self._node.actor(address) is None:
            raise ValueError(f"only a live actor of this node can {what} presence: {address}")

    def _topic_of(self, ref: str) -> str | None:
        where = self.table.key_of(ref)
        return None if where is None else where[0]

    def _add(self, topic: str, key: str, meta: Meta) -> None:
        self.table.add(topic, key, meta)
        self._outgoing.joined(topic, key, meta)
        self._changed()

    def _drop(self, address: Address, ref: str) -> None:
        owned = self._owned.get(address)
        if owned is not None:
            owned.pop(ref, None)
            if not owned:
                del self._owned[address]
        if self.table.remove(ref) is not None:
            self._outgoing.left(ref)
            self._changed()

    def _watch(self, address: Address) -> None:
        if address not in self._monitors:
            self._monitors[address] = self._actor.monitor(address)

    def _unwatch_if_idle(self, address: Address) -> None:
        if address not in self._owned and address not in self._subscribed:
            ref = self._monitors.pop(address, None)
            if ref is not None:
                self._actor.demonitor(ref)

    def _changed(self) -> None:
        """Something changed: make sure a flush comes within the interval."""
        if not self._flush_timer:
            self._flush_timer = True
            self._actor.start_timer(self._settings.interval, _FLUSH)

    # ---- the tracker's own loop -----------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled: diffs each interval, clocks, peers' messages, Downs."""
        if self._clustered:
            self._node.join(GROUP, self._actor.address)
            self._send_clock()
            for peer in self._node.members(GROUP):  # known already: ask them for all theirs
                if self._meet(peer.node, peer):
                    self._clocks.ask(peer.node, trio.current_time())
                    self._node.send(peer, SyncRequest(self._actor.address))
        async for message in self._actor:
            self.handle(message)

    def handle(self, message: Any) -> None:
        """Act on one message of the tracker's mailbox."""
        if isinstance(message, Timeout):
            if message.msg == _FLUSH:
                self._flush_timer = False
                self.flush()
            elif message.msg == _CLOCK:
                self._send_clock()
        elif isinstance(message, Down):
            self._down(message.address)
        elif isinstance(message, Delta):
            self._delta(message)
        elif isinstance(message, Clock):
            self._clock(message)
        elif isinstance(message, SyncRequest):
            self._send_snapshot(message.tracker)
        elif isinstance(message, Snapshot):
            self._snapshot(message)

    def flush(self) -> None:
        """Send this interval's diffs to the subscribers, and its delta to the other nodes."""
        for diff in self.table.flush():
            for subscriber in self._subscribers.get(diff.topic, ()):
                self._node.notify(subscriber, diff)
                self._diffs += 1
        if self._outgoing and self._clustered:
            joins, leaves = self._outgoing.take()
            self._seq += 1
            me = self._actor.address
            delta = Delta(self._node.name, self._epoch, self._seq, joins, leaves, me)
            self._deltas += 1
            self._delta_bytes += len(pack(delta))
            self._node.publish_remote(GROUP, "message", delta)
        elif self._outgoing:
            self._outgoing.take()

    def _down(self, address: Address) -> None:
        if self._peers.get(address.node) == address:
            self._peer_gone(address.node)
            return
        self._monitors.pop(address, None)
        for ref in builtins.list(self._owned.get(address, ())):
            self._drop(address, ref)
        for topic in builtins.list(self._subscribed.get(address, ())):
            self.unsubscribe(topic, address)

    def _peer_gone(self, node: str) -> None:
        """A peer's tracker ended, or its node is down: all its presences leave, in one diff."""
        tracker = self._peers.pop(node)
        monitor = self._monitors.pop(tracker, None)
        if monitor is not None:
            self._actor.demonitor(monitor)
        self._clocks.forget(node)
        dropped = self.table.drop_node(node)
        if dropped:
            logger.info("presence: node %s is gone; its presences leave (%d)", node, dropped)
            self._changed()

    # ---- other nodes ----------------------------------------------------------------------

    def _send_clock(self) -> None:
        clock = Clock(self._node.name, self._epoch, self._seq, self._actor.address)
        self._node.publish_remote(GROUP, "message", clock)
        self._actor.start_timer(self._settings.clock_period, _CLOCK)

    def _meet(self, node: str, tracker: Address) -> bool:
        """A peer's tracker spoke: watch it (its node's death is its Down); False if it is
        not one to listen to (this node, or a node the backend thinks is down)."""
        if node == self._node.name or tracker.node != node:
            return False
        known = self._peers.get(node)
        if known == tracker:
            return True
        if known is not None:  # its tracker restarted: start over with the new one
            self._peer_gone(node)
        if not self._node.backend.is_alive(node):
            return False
        self._peers[node] = tracker
        self._monitors[tracker] = self._actor.monitor(tracker)
        return True

    def _clock(self, clock: Clock) -> None:
        if not self._meet(clock.node, clock.tracker):
            return
        if self._clocks.clock(clock.node, clock.epoch, clock.seq, trio.current_time()) is (
            Verdict.SYNC
        ):
            self._node.send(clock.tracker, SyncRequest(self._actor.address))

    def _delta(self, delta: Delta) -> None:
        if not self._meet(delta.node, delta.tracker):
            return
        tracker = delta.tracker
        verdict = self._clocks.delta(delta.node, delta.epoch, delta.seq, trio.current_time())
        if verdict is Verdict.SYNC:
            self._node.send(tracker, SyncRequest(self._actor.address))
        elif verdict is Verdict.APPLY:
            for topic, key, meta in metas_of(delta.node, delta.joins):
                self.table.add(topic, key, meta)
            for ref in delta.leaves if type(delta.leaves) is builtins.list else ():
                if isinstance(ref, str) and ref.startswith(delta.node + "#"):
                    self.table.remove(ref)
            self._changed()

    def _send_snapshot(self, requester: Address) -> None:
        entries = entries_of(self.table.owned_by(self._node.name))
        self._node.send(requester, Snapshot(self._node.name, self._epoch, self._seq, entries))
        self._snapshots += 1

    def _snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.node not in self._peers:
            return
        self.table.replace_node(snapshot.node, metas_of(snapshot.node, snapshot.entries))
        self._clocks.snapshot(snapshot.node, snapshot.epoch, snapshot.seq)
        self._changed()
