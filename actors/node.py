"""A node: the actor table, names and groups, dead letters and the timer service.

One node runs per process (``async with open_node():``); everything that sends or
spawns finds it through the context, as Erlang code finds its node.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import attrs
import trio

from . import backend_wire as wire
from . import calls
from .actor import Actor, ActorArgs, current_actor
from .address import Address
from .backend import Backend, ClusterStatistics, LocalBackend
from .errors import MailboxFull, NoNode, NoSuchActor, NotInActor
from .mailbox import DEFAULT_CAPACITY, MailboxPolicy
from .messages import REVOKED, MonitorRef, unwrap
from .reasons import KILLED, NOPROC, ExitReason
from .remote import RemoteLinks, RemoteMonitors
from .timers import TimerService

if TYPE_CHECKING:
    from .children import ChildInfo

logger = logging.getLogger("corral.actors")

Fanout = Callable[["Node", Any, Any], int]
"""``fanout(node, to, payload)`` delivers what another node sent to ``to`` (a group, or an
address) on this node; returns how many took it."""

_fanouts: dict[str, Fanout] = {}


def register_fanout(kind: str, fanout: Fanout) -> None:
    """Name a way to deliver group payloads that other nodes can ask for (``publish_remote``).

    ``"message"`` (offer the payload to each member's mailbox) is built in; the server adds
    ``"frames"`` so that ``broadcast`` encodes a frame once per node.
    """
    _fanouts[kind] = fanout


class SpawnOptions(TypedDict, total=False):
    """``spawn``'s keyword options, for a function passing them on (Node.spawn has the
    defaults and says what each does)."""

    name: str | None
    capacity: int
    overflow: MailboxPolicy
    kind: str | None
    trap_exits: bool
    link: bool


Destination = Address | str
"""Where a message goes: an actor's address, or a registered name."""

_current_node: contextvars.ContextVar[Node] = contextvars.ContextVar("corral_node")


def current_node() -> Node:
    """The node this code runs under (NoNode outside ``open_node``): an actor's node, even
    when it runs inline in a task outside the node (``Actor.run_inline``)."""
    try:
        return _current_node.get()
    except LookupError:
        pass
    try:
        return current_actor().node
    except NotInActor:
        raise NoNode() from None


@attrs.frozen
class ActorInfo:
    """One live actor, for introspection."""

    address: Address
    names: tuple[str, ...]
    kind: str
    mailbox_length: int
    capacity: int
    received: int
    dropped: int
    started_at: float


@attrs.frozen
class Census:
    """Every live actor's mailbox, read in one pass (``Node.census``): what metrics and a
    dashboard need, with an ``ActorInfo`` only for the few actors they show."""

    kinds: dict[str, int]
    """Live actors by kind."""
    depths: list[int]
    """Every live mailbox's length."""
    deepest: list[ActorInfo]
    """The actors with the deepest mailboxes, deepest first (as many as asked for)."""
    with_drops: list[ActorInfo]
    """The actors whose mailbox has dropped or evicted messages."""

    @property
    def total(self) -> int:
        """Live actors."""
        return len(self.depths)


class Port(Protocol):
    """An address that is no actor: what is sent to it is handed to these methods at once
    (``call`` receives its reply through one, so a late reply finds no port and is dropped)."""

    def deliver(self, msg: Any) -> None:
        """An ordinary message sent to the port."""
        ...

    def notify(self, msg: Any) -> None:
        """A runtime notification (a ``Down`` in its ``Revocable`` envelope)."""
        ...


class SupervisorView(Protocol):
    """What introspection asks of a running supervisor (either kind)."""

    def children_info(self) -> list[ChildInfo]:
        """Its children, in order."""
        ...


@attrs.frozen
class NodeStatistics:
    """Counters for a whole node."""

    actors: int
    timers: int
    dead_letters: int


class Node:
    """Holds every live actor of this process and routes messages between them."""

    def __init__(self, name: str = "local", backend: Backend | None = None) -> None:
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.name = self.backend.node_id or name
        self.timers = TimerService()
        self.dead_letters = 0
        self.restarts = 0
        """Children restarted by this node's supervisors (each restart, for metrics)."""
        self.supervisors: dict[Address, SupervisorView] = {}
        """Running supervisors by their actor's address (the dashboard draws the tree)."""
        self._actors: dict[Address, Actor] = {}
        self._ports: dict[Address, Port] = {}
        self._serials = itertools.count(1)
        self.remote_monitors = RemoteMonitors(self._route_quietly, self.notify)
        self.remote_links = RemoteLinks(self._route_quietly, self._actors.get)
        self.backend.attach(self)

    # ---- actors ---------------------------------------------------------------------

    def spawn(
        self,
        nursery: trio.Nursery,
        fn: Callable[[Actor, *ActorArgs], Awaitable[None]],
        *args: *ActorArgs,
        name: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST,
        kind: str | None = None,
        trap_exits: bool = False,
        link: bool = False,
    ) -> Address:
        """Start ``fn(actor, *args)`` as an actor in ``nursery``; return its address at once.

        Messages sent before the task first runs wait in its mailbox. ``name`` registers
        it (NameTaken if held); ``link=True`` links it to the calling actor.
        """
        kind_name = kind or str(getattr(fn, "__qualname__", type(fn).__name__))
        address = Address(self.name, next(self._serials), name or kind_name)
        actor = Actor(
            self,
            address,
            capacity=capacity,
            overflow=overflow,
            kind=kind_name,
            trap_exits=trap_exits,
        )
        if name is not None:
            self.backend.register(name, address)
        self._actors[address] = actor
        if link:
            current_actor().link(address)
        nursery.start_soon(actor.run, fn, args, name=f"actor {address}")
        return address

    def actor(self, address: Address) -> Actor | None:
        """The live actor at ``address`` on this node, or None."""
        return self._actors.get(address)

    def open_port(self, port: Port) -> Address:
        """A new address of this node whose messages go to ``port`` until ``close_port``."""
        address = Address(self.name, next(self._serials), "port")
        self._ports[address] = port
        return address

    def close_port(self, address: Address) -> None:
        """Stop delivering to the port at ``address``: what is sent to it later is dropped."""
        self._ports.pop(address, None)

    def exit(self, address: Address, reason: ExitReason) -> None:
        """Send an exit signal (Erlang's exit/2); ``killed`` cannot be trapped."""
        actor = self._actors.get(address)
        if actor is None:
            if address.node != self.name:
                self._route(address.node, (wire.EXIT, address, wire.portable(reason)))
            return
        if reason == KILLED:
            actor.terminate(KILLED)
        else:
            actor.signal_exit(None, reason)

    async def wait(self, address: Address) -> ExitReason:
        """Wait for the actor at ``address`` to end; noproc if it is already gone."""
        actor = self._actors.get(address)
        if actor is None:
            return NOPROC
        return await actor.wait()

    def forget(self, actor: Actor) -> None:
        """Remove an ended actor from the table, its names and its groups."""
        self._actors.pop(actor.address, None)
        self.backend.forget(actor.address)
        self.remote_monitors.ended(actor.address, actor.exit_reason or NOPROC)

    # ---- messages -------------------------------------------------------------------

    def send(self, dest: Destination, msg: Any) -> bool:
        """Queue ``msg`` for ``dest`` without ever waiting.

        Returns whether the mailbox took it (its overflow policy decides when full;
        ``fail`` raises MailboxFull). An ended address is a counted no-op; an unknown
        name raises NoSuchActor.
        """
        address = dest if type(dest) is Address else self.resolve(dest)
        actor = self._actors.get(address)
        if actor is None:
            if address.node != self.name:
                return self._route(address.node, (wire.SEND, address, msg))
            return self._to_port(address, msg)
        return actor.mailbox.put_nowait(msg)

    def _to_port(self, address: Address, msg: Any) -> bool:
        """Hand ``msg`` to the port at ``address``; a dead letter if there is none (anymore)."""
        port = self._ports.get(address)
        if port is None:
            self.dead_letters += 1
            return False
        port.deliver(msg)
        return True

    async def call(
        self, dest: Destination, request: Any, timeout: float = calls.DEFAULT_CALL_TIMEOUT
    ) -> Any:
        """Send ``request`` to ``dest`` and wait for the answer (see ``actors.call``)."""
        return await calls.call(self, dest, request, timeout)

    async def send_wait(self, dest: Destination, msg: Any) -> bool:
        """Queue ``msg`` for ``dest``, waiting for room in its mailbox (backpressure).

        Another node's actor gets it as with ``send``: backpressure stops at the node.
        """
        address = dest if type(dest) is Address else self.resolve(dest)
        actor = self._actors.get(address)
        if actor is None:
            if address.node != self.name:
                return self._route(address.node, (wire.SEND, address, msg))
            return self._to_port(address, msg)
        if not await actor.mailbox.put(msg):
            self.dead_letters += 1
            return False
        return True

    def notify(self, dest: Destination, msg: Any) -> bool:
        """Deliver a runtime notification (timer, Down): never dropped, never raises."""
        try:
            address = dest if type(dest) is Address else self.resolve(dest)
        except NoSuchActor:
            self.dead_letters += 1
            return False
        actor = self._actors.get(address)
        if actor is None and address.node != self.name:
            payload = unwrap(msg)
            return payload is not REVOKED and self._route(
                address.node, (wire.NOTIFY, address, payload), quiet=True
            )
        if actor is None and address in self._ports:
            self._ports[address].notify(msg)
            return True
        if actor is None or not actor.mailbox.put_system(msg):
            self.dead_letters += 1
            return False
        return True

    def resolve(self, dest: Destination) -> Address:
        """The address ``dest`` stands for (NoSuchActor for a name nobody holds)."""
        if not isinstance(dest, str):
            raise TypeError(f"send to an Address or a registered name, not {dest!r}")
        address = self.backend.whereis(dest)
        if address is None:
            raise NoSuchActor.unregistered(dest)
        return address

    def _route(self, node: str, envelope: tuple[Any, ...], *, quiet: bool = False) -> bool:
        """Hand an envelope to the backend for another node; False (counted) if it cannot go."""
        if not self.backend.is_alive(node):
            self.dead_letters += 1
            return False
        try:
            payload = wire.encode(envelope)
        except wire.NotPortable:
            if quiet:
                logger.exception("a notification for %s cannot travel", node)
                return False
            raise
        return self.backend.route(node, payload)

    def _route_quietly(self, node: str, envelope: tuple[Any, ...]) -> bool:
        return self._route(node, envelope, quiet=True)

    # ---- names ----------------------------------------------------------------------

    def register(self, name: str, address: Address) -> None:
        """Bind ``name`` to a live actor (NameTaken if another holds it)."""
        if address not in self._actors:
            raise NoSuchActor.ended(f"register the name {name!r}", address)
        self.backend.register(name, address)

    def unregister(self, name: str) -> None:
        """Remove a name."""
        self.backend.unregister(name)

    def whereis(self, name: str) -> Address | None:
        """The address registered as ``name``, or None."""
        return self.backend.whereis(name)

    async def wait_for(self, name: str, timeout: float = math.inf) -> Address:
        """Wait until ``name`` is registered; NoSuchActor after ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            return await self.backend.wait_registered(name)
        raise NoSuchActor.not_registered_within(name, timeout)

    # ---- groups ---------------------------------------------------------------------

    def join(self, group: str, address: Address) -> None:
        """Add a live actor (of this node, or of a live node of the cluster) to ``group``;
        it leaves by itself when it ends."""
        if address not in self._actors:
            operation = f"join the group {group!r}"
            if address.node == self.name:
                raise NoSuchActor.ended(operation, address)
            if not self.backend.is_alive(address.node):
                raise NoSuchActor.ended(operation, address, f"its node {address.node!r} is down")
        self.backend.join(group, address)

    def leave(self, group: str, address: Address) -> None:
        """Remove ``address`` from ``group``."""
        self.backend.leave(group, address)

    def members(self, group: str) -> list[Address]:
        """The members of ``group``, in join order."""
        return self.backend.members(group)

    def which_groups(self) -> list[str]:
        """Every group that has members."""
        return self.backend.which_groups()

    def publish(self, group: str, msg: Any) -> int:
        """Offer ``msg`` to every member; return how many mailboxes took it.

        Never waits and never raises for a full member: each member's own overflow
        policy applies, so one slow member costs the others nothing.
        """
        taken = 0
        for address in self.local_members(group):
            actor = self._actors.get(address)
            if actor is not None:
                taken += actor.mailbox.offer(msg)
        return taken + self.publish_remote(group, "message", msg)

    def local_members(self, group: str) -> list[Address]:
        """The members of ``group`` that live on this node."""
        if self.backend.node_id is None:
            return self.backend.members(group)  # a one-process backend: every member is here
        return self.backend.members_on(group, self.name)

    def publish_remote(self, group: str, fanout: str, payload: Any) -> int:
        """Send ``payload`` once to every other node with members of ``group``, where
        ``fanout`` (see ``register_fanout``) delivers it; return how many remote members
        it went out for (they are not waited on)."""
        counts = self.backend.member_nodes(group)
        counts.pop(self.name, None)
        if not counts:
            return 0
        encoded = wire.encode((wire.PUBLISH, fanout, group, payload))
        return sum(
            count
            for node, count in counts.items()
            if self.backend.is_alive(node) and self.backend.route(node, encoded)
        )

    # ---- other nodes ------------------------------------------------------------------

    def send_remote(self, address: Address, fanout: str, payload: Any) -> bool:
        """Have ``address``'s node deliver ``payload`` to it with ``fanout`` (never waits)."""
        return self._route(address.node, (wire.PUBLISH, fanout, address, payload))

    def monitor_remote(self, watcher: Address, target: Address) -> MonitorRef:
        """Monitor an actor of another node: ``Down`` when it ends, or ``noconnection``
        when its node stops heartbeating (or cannot be reached now)."""
        return self.remote_monitors.monitor(watcher, target)

    def demonitor_remote(self, ref: MonitorRef) -> None:
        """Drop a monitor of another node's actor (a no-op for any other ref)."""
        self.remote_monitors.demonitor(ref)

    def link_remote(self, local: Address, remote: Address) -> None:
        """``local`` linked itself to another node's ``remote`` (see RemoteLinks.link)."""
        self.remote_links.link(local, remote)

    def unlink_remote(self, local: Address, remote: Address) -> None:
        """``local`` removed its link to another node's ``remote``."""
        self.remote_links.unlink(local, remote)

    def exit_linked_remote(self, ended: Address, remote: Address, reason: ExitReason) -> None:
        """Our ``ended`` actor was linked to another node's ``remote``: pass the exit on."""
        self.remote_links.ended(ended, remote, reason)

    def receive_remote(self, envelope: tuple[Any, ...]) -> None:
        """Act on an envelope another node sent this one (called by the backend, which has
        checked its shape); ``wire.Rejected`` if it names a fan-out this node does not have."""
        kind = envelope[0]
        if kind == wire.SEND:
            actor = self._actors.get(envelope[1])
            if actor is None:
                self._to_port(envelope[1], envelope[2])
                return
            try:
                actor.mailbox.put_nowait(envelope[2])
            except MailboxFull:
                pass  # counted by the mailbox; the sender is not here to be told
        elif kind == wire.NOTIFY:
            self.notify(envelope[1], envelope[2])
        elif kind == wire.PUBLISH:
            _, kind, group, payload = envelope
            fanout = _fanouts.get(kind)
            if fanout is None:
                raise wire.Rejected("unknown fan-out", repr(kind[:50]))
            fanout(self, group, payload)
        elif kind == wire.MONITOR:
            _, serial, watcher, target = envelope
            self.remote_monitors.watch(serial, watcher, target, alive=target in self._actors)
        elif kind == wire.DEMONITOR:
            self.remote_monitors.unwatch(*envelope[1:])
        elif kind == wire.DOWN:
            self.remote_monitors.down(envelope[1], envelope[4])
        elif kind == wire.EXIT:
            self.exit(envelope[1], envelope[2])
        elif kind == wire.LINK:
            self.remote_links.linked(*envelope[1:])
        elif kind == wire.UNLINK:
            self.remote_links.unlinked(*envelope[1:])
        elif kind == wire.LINKED_EXIT:
            self.remote_links.exit_signal(*envelope[1:])

    def node_down(self, node: str) -> None:
        """Another node stopped heartbeating: its monitored actors are down, and its linked
        actors exit, with reason noconnection."""
        self.remote_monitors.node_down(node)
        self.remote_links.node_down(node)

    def cluster(self) -> ClusterStatistics:
        """The nodes this one knows, whether they are alive, and the cross-node figures."""
        return self.backend.cluster()

    # ---- introspection ----------------------------------------------------------------

    def actors(self) -> list[ActorInfo]:
        """Every live actor with its mailbox figures."""
        return [self._info(actor) for actor in self._actors.values()]

    def census(self, deepest: int = 0) -> Census:
        """Every live actor's mailbox figures in one pass, with ``ActorInfo`` for the
        ``deepest`` deepest mailboxes and for those with drops only: cheap at any count."""
        kinds: Counter[str] = Counter()
        depths: list[int] = []
        waiting: list[Actor] = []
        dropping: list[Actor] = []
        for actor in self._actors.values():
            mailbox = actor.mailbox
            depth = len(mailbox)
            kinds[actor.kind] += 1
            depths.append(depth)
            if depth:
                waiting.append(actor)
            if mailbox.dropped:
                dropping.append(actor)
        shown = heapq.nlargest(deepest, waiting, key=lambda actor: len(actor.mailbox))
        if len(shown) < deepest:  # fill up with empty mailboxes
            idle = (actor for actor in self._actors.values() if not len(actor.mailbox))
            shown += itertools.islice(idle, deepest - len(shown))
        return Census(
            kinds=dict(kinds),
            depths=depths,
            deepest=[self._info(actor) for actor in shown],
            with_drops=[self._info(actor) for actor in dropping],
        )

    def names_of(self, address: Address) -> tuple[str, ...]:
        """The names ``address`` is registered under."""
        return tuple(self.backend.names_of(address))

    def _info(self, actor: Actor) -> ActorInfo:
        """One actor's ``ActorInfo``."""
        stats = actor.mailbox.statistics()
        return ActorInfo(
            address=actor.address,
            names=self.names_of(actor.address),
            kind=actor.kind,
            mailbox_length=stats.length,
            capacity=stats.capacity,
            received=stats.received,
            dropped=stats.dropped,
            started_at=actor.started_at,
        )

    @contextmanager
    def supervising(self, address: Address, supervisor: SupervisorView) -> Iterator[None]:
        """List ``supervisor`` in ``supervisors`` while its actor runs the block."""
        self.supervisors[address] = supervisor
        try:
            yield
        finally:
            del self.supervisors[address]

    def statistics(self) -> NodeStatistics:
        """Live actors, pending timers, dead letters."""
        return NodeStatistics(
            actors=len(self._actors), timers=len(self.timers), dead_letters=self.dead_letters
        )


@asynccontextmanager
async def open_node(name: str = "local", backend: Backend | None = None) -> AsyncIterator[Node]:
    """Run a node for the duration of the block: its timer service, and the context."""
    node = Node(name, backend)
    token = _current_node.set(node)
    try:
        async with trio.open_nursery() as system:
            system.start_soon(node.timers.run, name="corral timer service")
            await system.start(node.backend.serve)
            yield node
            await node.backend.leave_cluster()
            system.cancel_scope.cancel()
    finally:
        _current_node.reset(token)


def _deliver_message(node: Node, group: str, msg: Any) -> int:
    taken = 0
    for address in node.local_members(group):
        actor = node.actor(address)
        if actor is not None:
            taken += actor.mailbox.offer(msg)
    return taken


register_fanout("message", _deliver_message)
