"""Who is here, across the cluster: track actors under a topic, list them, get diffs.

One tracker actor runs per node (``child_spec()`` under a supervisor, or ``open_presence``).
An actor tracks itself (or a connection) under a topic with a key and metadata (``track``);
``list(topic)`` gives each key with its metas, ``count(topic)`` the keys in O(1), and a
subscriber gets one ``PresenceDiff`` per interval while anything changes. An actor that ends
leaves at once (the tracker monitors it). On a cluster each node owns its presences and
replicates them to the others (``presence_sync``); a node that dies leaves with all its
presences when the backend declares it down (the Redis backend's ``lease``), in one diff.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from .actor import Actor, current_actor
from .address import Address
from .node import Node, current_node
from .presence_table import Meta, Metas, PresenceDiff
from .presence_tracker import (
    DEFAULT_INTERVAL,
    PresenceNotRunning,
    PresenceSettings,
    PresenceStatistics,
    PresenceTracker,
)
from .specs import ChildSpec

# ---- the node's tracker, and the functions actors call ------------------------------------

_trackers: dict[Node, PresenceTracker] = {}


def tracker() -> PresenceTracker:
    """This node's presence tracker (PresenceNotRunning if none runs)."""
    found = _trackers.get(current_node())
    if found is None:
        raise PresenceNotRunning()
    return found


async def run_tracker(actor: Actor, settings: PresenceSettings) -> None:
    """The tracker actor's body: one per node."""
    node = actor.node
    if node in _trackers:
        raise RuntimeError(f"a presence tracker already runs on node {node.name}")
    _trackers[node] = PresenceTracker(actor, settings)
    try:
        await _trackers[node].run()
    finally:
        del _trackers[node]


def child_spec(settings: PresenceSettings | None = None, *, id: str = "presence") -> ChildSpec:
    """The tracker as a supervisor's child (an app's ``children``)."""
    chosen = settings or PresenceSettings()
    return ChildSpec(id, run_tracker, (chosen,), capacity=chosen.capacity, kind="presence tracker")


@asynccontextmanager
async def open_presence(
    settings: PresenceSettings | None = None, *, node: Node | None = None
) -> AsyncIterator[PresenceTracker]:
    """Run the tracker of ``node`` (default: the current one) for the block, outside a
    supervisor (tests, scripts)."""
    chosen = settings or PresenceSettings()
    node = node or current_node()
    async with trio.open_nursery() as nursery:
        node.spawn(nursery, run_tracker, chosen, capacity=chosen.capacity, kind="presence tracker")
        while node not in _trackers:  # it registers as soon as its task first runs
            await trio.lowlevel.checkpoint()
        yield _trackers[node]
        nursery.cancel_scope.cancel()


def _me(address: Address | None) -> Address:
    return address if address is not None else current_actor().address


def track(
    topic: str, key: str, meta: Mapping[str, Any] | None = None, *, address: Address | None = None
) -> str:
    """Track the calling actor (or ``address``, an actor of this node) under ``topic`` as
    ``key`` with ``meta`` (portable data); it leaves when it ends. Returns the meta's ref."""
    return tracker().track(topic, key, meta or {}, _me(address))


def untrack(topic: str, *, address: Address | None = None) -> int:
    """Stop tracking the calling actor (or ``address``) under ``topic``."""
    return tracker().untrack(topic, _me(address))


def update(
    topic: str, meta: Mapping[str, Any], *, address: Address | None = None
) -> builtins.list[str]:
    """Replace the calling actor's (or ``address``'s) metadata under ``topic``."""
    return tracker().update(topic, meta, _me(address))


def list(topic: str) -> Metas:  # noqa: A001 - Phoenix's Presence.list
    """Every key present under ``topic`` across the cluster, with its metas."""
    return tracker().table.listing(topic)


def count(topic: str) -> int:
    """How many keys are present under ``topic`` (O(1); three tabs of one user count once)."""
    return tracker().table.count(topic)


def subscribe(topic: str, *, address: Address | None = None) -> Metas:
    """Send the calling actor (or ``address``) a ``PresenceDiff`` per interval in which
    ``topic`` changes; returns the presences the first diff applies to."""
    return tracker().subscribe(topic, _me(address))


def unsubscribe(topic: str, *, address: Address | None = None) -> None:
    """Stop the diffs of ``topic``."""
    tracker().unsubscribe(topic, _me(address))


__all__ = [
    "DEFAULT_INTERVAL",
    "Meta",
    "Metas",
    "PresenceDiff",
    "PresenceNotRunning",
    "PresenceSettings",
    "PresenceStatistics",
    "PresenceTracker",
    "child_spec",
    "count",
    "list",
    "open_presence",
    "subscribe",
    "track",
    "tracker",
    "unsubscribe",
    "untrack",
    "update",
]
