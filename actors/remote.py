"""Monitors and links that cross nodes: the bookkeeping on each side, and what it sends.

A node keeps two tables of monitors: the ones its own actors hold on other nodes' actors (by
the monitor's serial, so that the answer becomes a ``Down`` carrying the right ref), and the
ones other nodes' actors hold on its own (so that a ``Down`` goes out when one ends). A link is
kept by both actors (as a local one is); ``RemoteLinks`` only remembers which links reach which
node. A node that stops heartbeating turns every monitor of its actors into
``Down(noconnection)`` and every link to them into the exit signal ``noconnection``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from . import backend_wire as wire
from .address import Address
from .messages import Down, MonitorRef, Revocable
from .reasons import NOCONNECTION, NOPROC, ExitReason


class LinkEnd(Protocol):
    """A local actor as the cross-node link bookkeeping sees it (``actors.Actor``)."""

    def remember_link(self, target: Address) -> None: ...
    def forget_link(self, target: Address) -> None: ...
    def signal_exit(self, sender: Address, reason: ExitReason) -> None: ...


Route = Callable[[str, tuple[Any, ...]], bool]
"""Send an envelope to a node; False if it cannot go."""
Notify = Callable[[Address, Any], bool]
"""Deliver a runtime notification to a local actor."""


class RemoteMonitors:
    """Both tables of one node; ``route`` and ``notify`` are the node's."""

    def __init__(self, route: Route, notify: Notify) -> None:
        self._route = route
        self._notify = notify
        self._watching: dict[int, tuple[MonitorRef, Address, Address]] = {}
        self._watchers: dict[Address, dict[tuple[str, int], Address]] = {}

    def monitor(self, watcher: Address, target: Address) -> MonitorRef:
        """``watcher`` (here) monitors ``target`` (on another node); ``noconnection`` at
        once if that node cannot be reached now."""
        ref = MonitorRef()
        self._watching[ref.serial] = (ref, watcher, target)
        if not self._route(target.node, (wire.MONITOR, ref.serial, watcher, target)):
            self.down(ref.serial, NOCONNECTION)
        return ref

    def demonitor(self, ref: MonitorRef) -> None:
        """Drop one of our monitors (a no-op for a ref that is not one)."""
        entry = self._watching.pop(ref.serial, None)
        if entry is not None:
            _, watcher, target = entry
            self._route(target.node, (wire.DEMONITOR, ref.serial, watcher, target))

    def watch(self, serial: int, watcher: Address, target: Address, alive: bool) -> None:
        """Another node's ``watcher`` monitors our ``target`` (``noproc`` if it has ended)."""
        if alive:
            self._watchers.setdefault(target, {})[(watcher.node, serial)] = watcher
        else:
            self._route(watcher.node, (wire.DOWN, serial, watcher, target, NOPROC))

    def unwatch(self, serial: int, watcher: Address, target: Address) -> None:
        """Another node dropped its monitor of our ``target``."""
        self._watchers.get(target, {}).pop((watcher.node, serial), None)

    def down(self, serial: int, reason: ExitReason) -> None:
        """An actor we monitor ended (or its node went away): tell the watcher."""
        entry = self._watching.pop(serial, None)
        if entry is not None:
            ref, watcher, target = entry
            self._notify(watcher, Revocable(ref, Down(ref, target, reason)))

    def ended(self, address: Address, reason: ExitReason) -> None:
        """Our actor at ``address`` ended: a ``Down`` to each remote watcher."""
        watchers = self._watchers.pop(address, None)
        if watchers:
            portable = wire.portable(reason)
            for (node, serial), watcher in watchers.items():
                self._route(node, (wire.DOWN, serial, watcher, address, portable))

    def node_down(self, node: str) -> None:
        """``node`` stopped heartbeating: its actors we monitor are down (noconnection)."""
        for serial, (_, _, target) in list(self._watching.items()):
            if target.node == node:
                self.down(serial, NOCONNECTION)
        for watchers in self._watchers.values():
            for key in [key for key in watchers if key[0] == node]:
                del watchers[key]

    def watched(self, target: Address) -> bool:
        """Whether another node monitors ``target``."""
        return bool(self._watchers.get(target))


class RemoteLinks:
    """Links between our actors and other nodes' actors: each actor keeps its links as a local
    one does; this remembers which reach which node, and sends what links send."""

    def __init__(self, route: Route, lookup: Callable[[Address], LinkEnd | None]) -> None:
        self._route = route
        self._lookup = lookup
        self._by_node: dict[str, set[tuple[Address, Address]]] = {}

    def link(self, local: Address, remote: Address) -> None:
        """``local`` linked itself to ``remote``: tell its node (if that node cannot be
        reached, ``local`` gets the exit signal noconnection)."""
        self._add(local, remote)
        if not self._route(remote.node, (wire.LINK, local, remote)):
            self.exit_signal(remote, local, NOCONNECTION)

    def unlink(self, local: Address, remote: Address) -> None:
        """``local`` removed its link to ``remote``."""
        self._discard(local, remote)
        self._route(remote.node, (wire.UNLINK, local, remote))

    def ended(self, local: Address, remote: Address, reason: ExitReason) -> None:
        """Our ``local`` actor, linked to ``remote``, ended: pass its exit on."""
        self._discard(local, remote)
        self._route(remote.node, (wire.LINKED_EXIT, local, remote, wire.portable(reason)))

    def linked(self, remote: Address, local: Address) -> None:
        """Another node's ``remote`` linked itself to our ``local`` (noproc if it has ended)."""
        actor = self._lookup(local)
        if actor is None:
            self._route(remote.node, (wire.LINKED_EXIT, local, remote, NOPROC))
        else:
            actor.remember_link(remote)
            self._add(local, remote)

    def unlinked(self, remote: Address, local: Address) -> None:
        """Another node's ``remote`` removed its link to our ``local``."""
        self._discard(local, remote)
        actor = self._lookup(local)
        if actor is not None:
            actor.forget_link(remote)

    def exit_signal(self, remote: Address, local: Address, reason: ExitReason) -> None:
        """``remote``, linked to our ``local``, ended (or its node went away)."""
        self._discard(local, remote)
        actor = self._lookup(local)
        if actor is not None:
            actor.forget_link(remote)
            actor.signal_exit(remote, reason)

    def node_down(self, node: str) -> None:
        """``node`` stopped heartbeating: every actor linked to one of its gets noconnection."""
        for local, remote in sorted(self._by_node.pop(node, ()), key=lambda p: p[0].serial):
            self.exit_signal(remote, local, NOCONNECTION)

    def _add(self, local: Address, remote: Address) -> None:
        self._by_node.setdefault(remote.node, set()).add((local, remote))

    def _discard(self, local: Address, remote: Address) -> None:
        links = self._by_node.get(remote.node)
        if links is not None:
            links.discard((local, remote))
            if not links:
                del self._by_node[remote.node]
